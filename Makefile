# Host toolchain for the prepaid-meter firmware. `make test` is what CI runs.

VENV   ?= .venv
PY      = $(VENV)/bin/python
MPY     = $(VENV)/bin/micropython
STAMP   = $(VENV)/.stamp
UMQTT   = .deps/mplib/umqtt/simple.py

BOARD  ?= sim-atm90e26
HOURS  ?= 48
SEED   ?= 1
BROKER ?=
FAULTS ?=

# Let tools/mprun.py find the micropython of this venv even when VENV is moved.
export MICROPYTHON := $(abspath $(MPY))

# Field tools (docs/deploy.md, docs/headend.md): make deploy PORT=/dev/ttyUSB0 BOARD=esp32-atm90e26 METER=id
PORT   ?=
METER  ?=
N      ?= 50
HEADEND_HOME ?= $(HOME)/.pm-headend
DRY_RUN ?=
FROZEN ?=

.PHONY: venv deps mosquitto service-deps rabbitmq mp32 sim demo screens-doc build test test-under-load bench bench-billing bench-service powercut ota-sim bench-storage deploy repl repl-sim fleet fleet-cluster clean distclean

venv: $(STAMP)

$(STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

deps: venv $(UMQTT) mosquitto rabbitmq service-deps

$(UMQTT): tools/fetch_umqtt.py | $(STAMP)
	$(PY) tools/fetch_umqtt.py

mosquitto:
	@tools/ensure_mosquitto.sh

service-deps:
	@tools/ensure_service_deps.sh

# RabbitMQ (a clustered MQTT broker) for make fleet-cluster and its tests (docs/broker.md 6).
rabbitmq:
	@tools/ensure_rabbitmq.sh

# The 32-bit MicroPython with the firmware frozen in (.deps/mp32/micropython; rebuilt only when an
# input changed). MICROPY_SRC: a MicroPython v1.28.0 source tree or tarball (default: ../shared).
MICROPY_SRC ?=
mp32: deps
	$(if $(MICROPY_SRC),MICROPY_SRC="$(MICROPY_SRC)") $(PY) tools/build_mp32.py

sim: deps
	$(PY) tools/sim.py --board "$(BOARD)" --hours "$(HOURS)" --seed "$(SEED)" $(if $(BROKER),--broker $(BROKER)) $(if $(FAULTS),--faults $(FAULTS)) $(if $(SCREENS),--screens "$(SCREENS)")

# The utility's side end to end (docs/service.md): a month of a simulated meter, the headend service with
# its database, reminders by e-mail and SMS webhook, a top-up on the web page and the month's bill.
demo: deps
	$(PY) tools/demo.py

# The pictures of every customer screen in docs/customer.md, rendered from the firmware.
screens-doc: deps
	$(PY) tools/screen_gallery.py docs/customer

build: venv
	$(PY) tools/build.py

bench: deps mp32
	$(PY) bench/run.py

test: deps build mp32
	$(PY) -m pytest host_tests -ra

# `make test` RUNS times in a row while BURNERS CPU-bound processes run beside it (issue 17: a
# suite that holds on a busy machine); one JSON line at the end.
RUNS ?= 3
BURNERS ?= 2
test-under-load: deps build mp32
	$(PY) tools/under_load.py --burners $(BURNERS) --runs $(RUNS) -- $(PY) -m pytest host_tests -ra

# Power-cut / I/O-error / full-disk sweep of the storage (a quick one runs inside `make test`).
powercut: venv
	$(PY) tools/powercut.py $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(GEOMETRY),--geometry $(GEOMETRY))

# Firmware updates over the air (docs/ota.md): a power cut at every flash write of an update that
# passes its trial and of one that rolls back, forged/old/wrong images refused; one JSON line.
# On the 32-bit build with the firmware frozen (make mp32), as the device runs it.
ota-sim: deps mp32
	PM_RUNTIME=micropython32 $(PY) tools/ota_sim.py

# Flash wear and energy-at-risk figures of the storage (docs/storage.md).
bench-storage: venv
	MICROPYPATH=firmware:boards $(MPY) -X heapsize=8m bench/storage.py

deploy: venv
	$(PY) tools/deploy.py --port "$(PORT)" --board "$(BOARD)" --meter "$(METER)" --home "$(HEADEND_HOME)" $(if $(DRY_RUN),--dry-run) $(if $(FROZEN),--frozen)

# The technician's REPL on a simulated meter (docs/technician.md): make repl-sim [BOARD=sim-atm90e26] [FRESH=1]
repl-sim: deps
	$(PY) tools/repl_sim.py $(if $(filter sim-%,$(BOARD)),--board "$(BOARD)") $(if $(FRESH),--fresh) $(if $(SPEED),--speed "$(SPEED)")

repl: venv
	@test -n "$(PORT)" || { echo "make repl: PORT is required, e.g. PORT=/dev/ttyUSB0" >&2; exit 2; }
	$(VENV)/bin/mpremote connect "$(PORT)" repl

# N meters on the 32-bit frozen build against one Mosquitto (docs/fleet.md), up to N=1000.
fleet: deps mp32
	PM_RUNTIME=micropython32 $(PY) tools/fleet.py --meters "$(N)" --seed "$(SEED)"

# The same fleet against a three-node RabbitMQ cluster; one node is restarted and one killed.
fleet-cluster: deps mp32
	PM_RUNTIME=micropython32 $(PY) tools/fleet.py --broker rabbitmq --nodes 3 --meters "$(N)" --seed "$(SEED)"

clean:
	rm -rf build .pytest_cache
	find . \( -path ./.git -o -path ./$(VENV) -o -path ./.deps \) -prune \
	    -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .deps

# Billing figures (time per charge step, tariff RAM, token check); printed, never asserted.
.PHONY: bench-billing
# The headend service's storage rate on SQLite and PostgreSQL (docs/service.md, How it scales).
bench-service: deps
	$(PY) bench/service_ingest.py

bench-billing: venv
	MICROPYPATH=firmware $(MPY) -X heapsize=256k bench/bench_billing.py
