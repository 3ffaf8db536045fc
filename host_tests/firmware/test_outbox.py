"""outbox.Outbox: the persistent MQTT outbox (run under MicroPython)."""

PRELUDE = """
import os, mptest
from outbox import Outbox
from simhw.cutdev import CutBlockDevice
import store
dev = CutBlockDevice(48)
store.mount(dev, "/f")
"""


def test_fifo_api(mpy):
    res = mpy(PRELUDE + """
ob = Outbox(4, "/f/ob")
mptest.eq(ob.count, 0, "empty")
mptest.raises(IndexError, ob.peek)
for i in range(3):
    mptest.eq(ob.put(i % 3, b"msg%d" % i), i, "put returns seq")
mptest.eq(ob.count, 3, "count")
mptest.eq(ob.peek(), (0, b"msg0"), "peek oldest")
mptest.eq(ob.peek(), (0, b"msg0"), "peek does not consume")
ob.pop()
mptest.eq(ob.peek(), (1, b"msg1"), "then the next")
for i in range(3, 8):
    ob.put(1, b"msg%d" % i)
mptest.eq(ob.count, 4, "bounded by capacity")
mptest.eq(ob.dropped, 3, "overwritten unsent messages are counted")
mptest.eq(ob.peek(), (1, b"msg4"), "oldest kept")
mptest.eq(ob.put(1, bytes(300)), -1, "too long: dropped, not truncated")
mptest.eq(ob.dropped, 4, "and counted")
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_survives_reboot_and_replays(mpy):
    res = mpy(PRELUDE + """
ob = Outbox(16, "/f/ob")
for i in range(6):
    ob.put(0, b"t%d" % i)
ob.pop(); ob.pop()
ob.checkpoint()
ob.pop()  # sent after the last checkpoint: goes out again after a reboot (at-least-once)
ob2 = Outbox(16, "/f/ob")
mptest.eq(ob2.count, 4, "unsent messages survive a reboot")
mptest.eq(ob2.peek(), (0, b"t2"), "from the checkpointed position")
mptest.eq(ob2.next_seq, 6, "seq continues")
mptest.eq(ob2.seq, 6, "numbered from 1: the newest message is number 6")
mptest.eq(ob2.replay_from(0), 1, "backfill from the start: message 1 goes out first")
mptest.eq(ob2.count, 6, "every retained message queued again")
mptest.eq(ob2.peek(), (0, b"t0"), "replays the oldest retained")
mptest.eq(ob2.replay_from(5), 5, "the answer names the first number asked for that will go out")
mptest.eq((ob2.count, ob2.peek()), (6, (0, b"t0")), "replay_from never skips unsent messages")
mptest.eq(ob2.replay_from(7), 0, "nothing at or after a future number")
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_falls_back_to_ram_when_flash_fails(mpy):
    res = mpy(PRELUDE + """
ob = Outbox(8, "/f/ob")
ob.put(0, b"a")
dev.fail_at = dev.ops + 1
dev.sticky = True
mptest.eq(ob.put(2, b"reply"), 1, "still queued (in RAM), numbered on: no reboot tells the backend of a restart")
mptest.eq(ob.seq, 2, "the newest number")
mptest.eq(ob.faults, 2, "both tries counted (the retry follows a remount)")
mptest.eq(ob.dropped, 1, "the message only on flash is counted lost")
mptest.eq(ob.peek(), (2, b"reply"), "the new message is sent")
ob.pop()
mptest.eq(ob.count, 0, "drained")
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_ram_outbox_without_path(mpy):
    res = mpy("""
import mptest
from outbox import Outbox
ob = Outbox(2)
ob.put(0, b"x"); ob.put(1, b"y"); ob.put(2, b"z")
mptest.eq((ob.count, ob.dropped), (2, 1), "RAM outbox keeps the newest")
mptest.eq(ob.peek(), (1, b"y"), "oldest kept")
ob.checkpoint()
mptest.done()
""")
    assert res.result["ok"]
