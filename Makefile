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

.PHONY: venv deps mosquitto sim build test bench bench-billing powercut bench-storage clean distclean

venv: $(STAMP)

$(STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

deps: venv $(UMQTT) mosquitto

$(UMQTT): tools/fetch_umqtt.py | $(STAMP)
	$(PY) tools/fetch_umqtt.py

mosquitto:
	@tools/ensure_mosquitto.sh

sim: deps
	$(PY) tools/sim.py --board "$(BOARD)" --hours "$(HOURS)" --seed "$(SEED)" $(if $(BROKER),--broker $(BROKER)) $(if $(FAULTS),--faults $(FAULTS))

build: venv
	$(PY) tools/build.py

bench: deps
	$(PY) bench/run.py

test: deps build
	$(PY) -m pytest host_tests -ra

# Power-cut / I/O-error / full-disk sweep of the storage (a quick one runs inside `make test`).
powercut: venv
	$(PY) tools/powercut.py

# Flash wear and energy-at-risk figures of the storage (docs/storage.md).
bench-storage: venv
	MICROPYPATH=firmware:boards $(MPY) -X heapsize=8m bench/storage.py

clean:
	rm -rf build .pytest_cache
	find . \( -path ./.git -o -path ./$(VENV) -o -path ./.deps \) -prune \
	    -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .deps

# Billing figures (time per charge step, tariff RAM, token check); printed, never asserted.
.PHONY: bench-billing
bench-billing: venv
	MICROPYPATH=firmware $(MPY) -X heapsize=256k bench/bench_billing.py
