# A command-topic flood against the real firmware (app.Meter on the sim-powercut board, its
# littlefs on a RAM flash of the meter partition's geometry), under micropython:
#   micropython tools/flood_mp.py quiet|flood RATE SECONDS [LOAD_W]
# After a quiet warm-up, SECONDS of simulated time run with RATE refused commands per second
# ("flood") or none ("quiet"), delivered as the link does: a few per poll, polls between ticks.
# The flood mixes what anyone who can publish can send: random bytes, commands with forged MACs,
# oversized and retained payloads, and replays of captured genuine commands (answered again,
# stale or expired). A genuine top-up arrives every 10 minutes throughout. Flash bytes and erases
# are counted on the block device for the measured window only. Prints a JSON summary.
import sys
import gc
import json
import time
from binascii import hexlify

import app as app_mod
from hmac256 import HmacSha256
from simhw.cutdev import CutBlockDevice
import sim_powercut

METER = "fl-0001"
KEY = b"flood-harness-test-key-only-32bb"  # test key for this harness only
TICK_MS = 1000  # the real board's loop period
WARMUP_S = 1800
POLLS_PER_TICK = 10  # main.loop polls the link at least every 100 ms while it waits for the tick
PER_POLL = 4  # link.py: messages handled per poll
TOPUP_EVERY_S = 600
BLOCKS = 496  # the meter image's "meter" partition (1984 KiB, boards/esp32_meter/partitions.csv)
_EXP = 1767225600 + 30 * 86400


class FloodLink:
    """An MQTT link that is always up: poll() hands the app the messages queued for it, a few at
    a time; publish() counts what the meter sends, by topic."""

    state = 1
    connects = 1
    oversized = 0
    short = 0

    def __init__(self, on_message, topic):
        self._on = on_message
        self._topic = topic
        self.queue = []  # (payload, retained)
        self.retained = 0
        self.sent = {}
        self.qos0 = 0

    def poll(self):
        n = PER_POLL
        q = self.queue
        while n and q:
            p, r = q.pop(0)
            n -= 1
            if p is None:
                self.oversized += 1  # a packet over the link's read limit: dropped by link.py
                continue
            self.retained = r
            self._on(self._topic, p)
            self.retained = 0

    def publish(self, topic, msg, qos=1, retain=False):
        k = topic.split(b"/")[-1].decode()
        self.sent[k] = self.sent.get(k, 0) + 1
        if not qos:
            self.qos0 += 1
        return True

    def wait(self, ms):
        pass


class Backend:
    def __init__(self):
        self.mac = HmacSha256(KEY)
        self.next_id = 1

    def sign(self, body):
        body = body.encode() if isinstance(body, str) else body
        return hexlify(self.mac.digest(body)) + b" " + body

    def command(self, op, exp=_EXP, **args):
        cid = self.next_id
        self.next_id += 1
        extra = "".join(',"%s":%d' % (k, v) for k, v in args.items())
        return cid, self.sign('{"m":"%s","id":%d,"exp":%d,"op":"%s"%s}' % (METER, cid, exp, op, extra))


def flood_payloads(captured, expired, seed):
    """The flood's repertoire (payload, retained); None stands for an oversized MQTT packet."""
    rnd = seed
    out = []
    for i in range(16):
        rnd = (rnd * 1103515245 + 12345) & 0x3FFFFFFF
        out.append((bytes((rnd >> (k % 20)) & 0xFF for k in range(40 + i)), 0))  # random bytes
    forged = hexlify(bytes(32)) + b' {"m":"%s","id":99999,"exp":%d,"op":"topup","amt":100000}' % (
        METER.encode(), _EXP)
    out += [(forged, 0)] * 8  # a well-formed command with a forged MAC: costs the meter an HMAC
    out += [(c, 0) for c in captured]  # replays: the last 8 are answered again, older ones stale
    out += [(expired, 0)] * 2
    out.append((b"x" * 1100, 0))  # over the command size limit
    out.append((captured[-1], 1))  # retained
    out.append((None, 0))
    return out


def run(mode, rate, seconds, load_w):
    gc.collect()
    dev = CutBlockDevice(BLOCKS)
    board = sim_powercut.Board({"meter_id": METER, "key": KEY, "dev": dev, "load_w": load_w,
                                "config": {"opening_balance": 10 ** 6, "auto_reconnect": True}})
    links = []

    def make_link(on_message, subs, will, birth):
        links.append(FloodLink(on_message, subs[0]))
        return links[0]

    board.make_link = make_link
    m = app_mod.Meter(board)
    m.boot()
    link = links[0]
    be = Backend()
    captured = []
    for _ in range(10):  # genuine traffic an attacker could have recorded
        cid, p = be.command("topup", amt=10)
        captured.append(p)
        link.queue.append((p, 0))
    _, expired = be.command("topup", exp=1767225600 - 1, amt=10)
    repertoire = flood_payloads(captured, expired, 7)

    def second(flood):
        for _ in range(POLLS_PER_TICK):
            if flood:
                for _ in range(rate // POLLS_PER_TICK):
                    link.queue.append(repertoire[pos[0] % len(repertoire)])
                    pos[0] += 1
            m.sync.poll()
            while link.queue:  # the loop wakes as soon as more is readable (main.loop)
                m.sync.poll()
        board.advance(TICK_MS)
        t0 = time.ticks_us()
        m.step()
        return time.ticks_diff(time.ticks_us(), t0)

    pos = [0]
    for _ in range(WARMUP_S):
        second(False)
    link.sent = {}
    p0, b0, e0 = dev.programs, dev.bytes_programmed, dev.erases
    ev0 = m.events.seq
    topups0 = m.topups
    bal0 = m.account.balance
    late = 0
    max_step_us = 0
    max_second_us = 0
    gc.collect()
    alloc0 = gc.mem_alloc()
    peak = alloc0
    t_start = time.ticks_ms()
    sent_topups = 0
    flood = mode == "flood"
    pos[0] = 0
    for s in range(seconds):
        topup = s % TOPUP_EVERY_S == 60
        if topup:
            cid, p = be.command("topup", amt=1000)
            link.queue.insert(len(link.queue) // 2, (p, 0))  # in the middle of whatever is queued
            sent_topups += 1
        want = m.topups + 1
        t0 = time.ticks_us()
        us = second(flood)
        if topup and (m.topups != want or link.sent.get("reply", 0) < sent_topups):
            late += 1  # not applied and answered within the second it arrived
        total = time.ticks_diff(time.ticks_us(), t0)
        if us > max_step_us:
            max_step_us = us
        if total > max_second_us:
            max_second_us = total
        if s % 300 == 299:  # live heap (after a collection), so a leak shows as growth
            gc.collect()
            if gc.mem_alloc() > peak:
                peak = gc.mem_alloc()
    wall_ms = time.ticks_diff(time.ticks_ms(), t_start)
    hours_x1000 = seconds * 1000 // 3600
    by = getattr(m.sync, "tally", None)  # (older firmware: no tally)
    return {
        "mode": mode, "rate": rate, "seconds": seconds, "load_w": load_w,
        "flash_bytes": dev.bytes_programmed - b0, "flash_erases": dev.erases - e0,
        "flash_programs": dev.programs - p0,
        "flash_bytes_per_hour": (dev.bytes_programmed - b0) * 1000 // hours_x1000,
        "flash_erases_per_hour": (dev.erases - e0) * 1000 // hours_x1000,
        "flood_messages": pos[0] if flood else 0,
        "refusals_counted": by.ever if by else m.commands.refused,
        "summaries": by.summaries if by else 0,
        "events": m.events.seq - ev0,
        "answers_published": link.qos0, "published": link.sent,
        "suppressed": m.sync.suppressed,
        "topups_sent": sent_topups, "topups_applied": m.topups - topups0, "topups_late": late,
        "balance_gain": m.account.balance - bal0,
        "outbox_dropped": m.sync.outbox.dropped, "outbox_pending": m.sync.outbox.count,
        "max_step_us": max_step_us, "max_second_us": max_second_us, "wall_ms": wall_ms,
        "heap_growth": peak - alloc0,
        "step_errors": m.step_errors,
    }


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode not in ("quiet", "flood"):
        raise SystemExit("mode: quiet or flood")
    rate = int(sys.argv[2])
    seconds = int(sys.argv[3])
    load = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    print(json.dumps(run(mode, rate, seconds, load)))
