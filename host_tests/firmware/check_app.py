# Runs under micropython: the whole app on the sim board, no broker.
import mptest
import simkit
import app
import record
import relay
import events
from store import RecordStore

FLASH = simkit.fresh_flash("/tmp/pm-test-app.img")
KEY = simkit.TEST_KEY
b = simkit.board(FLASH, config={"opening_balance": 100})
m = app.Meter(b)
m.boot()
r = simkit.Replies(m)
mptest.eq(m.account.balance, 100, "opening balance from provisioning")
mptest.eq(m.relay.state, relay.CONNECTED, "new meter connected")


def run_load(seconds, watts, tick_s=5):
    # Drive the emulator at a fixed load (the household model is bypassed for exact figures).
    for _ in range(seconds // tick_s):
        p = watts if b.relay.closed else 0
        b.emu.set_load(p)
        b.emu.advance(tick_s * 1000)
        b.clock.advance(tick_s * 1000)
        m.step()


# A monostable relay is open without power; after boot it closes after the randomised
# reconnect delay (so a fleet does not switch back on together). Wait for that, without load.
n = 0
while not b.relay.closed and n < 720:
    run_load(5, 0)
    n += 1
mptest.check(b.relay.closed, "relay closes after the boot delay")

# 1. Consumption is metered and charged exactly; credit runs out; the relay opens.
run_load(3600, 2000)  # 2 kWh at 25 minor/kWh = 50
mptest.eq(m.metering.imp_wh, 2000, "2 kW for an hour is 2000 Wh")
mptest.eq(b.emu.truth_mj // 3600000, 2000, "truth agrees")
mptest.eq(m.account.charged, 2000 * m.tariff.price // m.tariff.den, "charged = tariff x energy")
mptest.eq(m.account.balance, 100 - m.account.charged, "balance = opening - charged")
run_load(3 * 3600, 2000)
mptest.eq(m.relay.state, relay.DISCONNECTED, "relay opens at zero credit")
mptest.check(m.account.balance <= 0, "balance exhausted")
mptest.check(not b.relay.closed, "contacts open")
truth_open = b.emu.truth_mj
run_load(600, 2000)
mptest.eq(b.emu.truth_mj, truth_open, "nothing flows while open")
codes = [m.events.get(s)[0] for s in range(m.events.oldest_seq(), m.events.seq)]
mptest.check(events.CREDIT_EXHAUSTED in codes and events.RELAY_OPEN in codes, "exhaustion and relay events")

# 2. A signed top-up is applied, committed before the reply, and arms the relay.
now = simkit.unix_now(b)  # commands carry Unix time
r.drain()
bal0 = m.account.balance
m.on_message(b"cmd", simkit.sign(KEY, {"m": "t-0001", "id": 10, "exp": now + 600, "op": "topup", "amt": 500}))
rep = r.replies()
mptest.eq(len(rep), 1, "one reply")
mptest.eq(rep[0]["res"], "applied", "top-up applied")
mptest.eq(rep[0]["id"], 10, "reply carries the command id")
mptest.eq(m.account.balance, bal0 + 500, "balance credited")
mptest.eq(m.relay.state, relay.READY, "credit restored: ready for reconnection, not connected")
mptest.check(not b.relay.closed, "contacts stay open until the customer confirms")
st = RecordStore("/flash/state.a", "/flash/state.b", record.SIZE)
mptest.check(st.load(), "record readable")
m2 = app.Meter(b)
record.unpack(st.payload, m2)
mptest.eq(m2.account.balance, bal0 + 500, "the top-up was on flash when the reply was queued")

# 3. The same command again: the original answer, applied once.
m.on_message(b"cmd", simkit.sign(KEY, {"m": "t-0001", "id": 10, "exp": now + 600, "op": "topup", "amt": 500}))
rep = r.replies()
mptest.eq((rep[0]["res"], rep[0]["rep"]), ("applied", 1), "repeat answered as applied, marked repeat")
mptest.eq(m.account.balance, bal0 + 500, "repeat not re-applied")

# 4. Refusals change nothing.
bal = m.account.balance
good = simkit.sign(KEY, {"m": "t-0001", "id": 11, "exp": now + 600, "op": "topup", "amt": 100})
forged = bytearray(good)
forged[-3] ^= 1
cases = (
    ("bad_mac", bytes(forged)),
    ("bad_mac", simkit.sign(b"x" * 32, {"m": "t-0001", "id": 12, "exp": now + 600, "op": "topup", "amt": 100})),
    ("wrong_meter", simkit.sign(KEY, {"m": "t-0002", "id": 13, "exp": now + 600, "op": "topup", "amt": 100})),
    ("expired", simkit.sign(KEY, {"m": "t-0001", "id": 14, "exp": now - 1, "op": "topup", "amt": 100})),
    ("stale_id", simkit.sign(KEY, {"m": "t-0001", "id": 9, "exp": now + 600, "op": "topup", "amt": 100})),
    ("malformed", b"nonsense"),
    ("oversized", b"0" * 2000),
)
for reason, payload in cases:
    m.on_message(b"cmd", payload)
    rep = r.replies()
    mptest.eq(rep[0]["res"] if rep else None, reason, "refusal reason")
    mptest.eq(m.account.balance, bal, "refused command changes no balance: " + reason)
mptest.eq(m.commands.last_id, 10, "refusals do not move the replay window")

# 5. The customer confirms locally: a short press does nothing, a 3 s hold reconnects.
b.button.hold(2500)
run_load(10, 500, 1)
mptest.eq(m.relay.state, relay.READY, "2.5 s press ignored")
b.button.hold(4500)
run_load(10, 500, 1)
mptest.eq(m.relay.state, relay.CONNECTED, "3 s hold reconnects")
mptest.check(b.relay.closed, "contacts closed")

# 6. Remote disconnect and direct reconnect.
m.on_message(b"cmd", simkit.sign(KEY, {"m": "t-0001", "id": 20, "exp": now + 600, "op": "disconnect"}))
mptest.eq(m.relay.state, relay.DISCONNECTED, "remote disconnect")
m.on_message(b"cmd", simkit.sign(KEY, {"m": "t-0001", "id": 21, "exp": now + 600, "op": "reconnect"}))
mptest.eq(m.relay.state, relay.READY, "reconnect arms by default")
m.on_message(b"cmd", simkit.sign(KEY, {"m": "t-0001", "id": 22, "exp": now + 600, "op": "reconnect", "direct": True}))
mptest.eq(m.relay.state, relay.CONNECTED, "direct reconnect closes")

# 7. Reboot from flash: everything committed comes back; the relay follows the record.
run_load(600, 1000)
m.commit()
energy, bal, state = m.metering.imp_wh, m.account.balance, m.relay.state
b2 = simkit.board(FLASH, config={"opening_balance": 100})
m3 = app.Meter(b2)
m3.boot()
mptest.eq((m3.metering.imp_wh, m3.account.balance, m3.relay.state), (energy, bal, state), "state after reboot")
mptest.eq(m3.commands.last_id, 22, "replay window after reboot")
m3.on_message(b"cmd", simkit.sign(KEY, {"m": "t-0001", "id": 10, "exp": now + 600, "op": "topup", "amt": 500}))
mptest.eq(m3.account.balance, bal, "a top-up applied before the reboot is not applied again")

mptest.done(energy_wh=m.metering.imp_wh, charged=m.account.charged)
