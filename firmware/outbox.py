# The MQTT outbox: a FIFO of (topic kind, payload) uplink messages kept on flash, so telemetry,
# events and replies queued while the link is down survive a reboot. Each message gets an outbox
# sequence number (monotonic across reboots) and stays on flash after it is sent until rotation,
# so the backend can ask for a backfill (replay_from). The send position (head) is kept in RAM
# and checkpointed with the hot-record commits: after a power cut a few sent messages may go out
# again (at-least-once; the backend de-duplicates by seq), none that were queued are lost.
# If the flash refuses a write, the outbox carries on in RAM and counts the fault.
import struct
from binascii import crc32
from micropython import const
from journal import Ring

_MSG_SIZE = const(256)
# Default capacity: seven days of 15-minute data (about 195 messages a day: 96 tele, 96 lp, the
# daily snapshot and a few events) with room to spare; about 100 erase blocks of flash.
CAPACITY = const(1500)
_RAM_CAPACITY = const(32)  # when the flash refuses: a RAM ring this big is all the heap can spare
_HDR = const(3)  # kind u8, length u16
_HEAD_FMT = "<II"  # head seq, crc32
_READ_TRIES = const(3)


class Outbox:
    def __init__(self, capacity=CAPACITY, path=None, msg_size=_MSG_SIZE):
        self._n = capacity
        self._size = msg_size
        self._rec = bytearray(msg_size + _HDR)
        self._hb = bytearray(8)
        self.dropped = 0  # messages lost: overwritten while unsent, too long, or unreadable
        self.faults = 0  # flash errors
        self.on_error = None  # called after a flash error (the app remounts)
        self._path = path
        self._peeked = None  # (kind, payload) of message _peek_seq, the last one peeked
        self._peek_seq = -1
        try:
            self._ring = Ring(path, msg_size + _HDR, capacity)
        except OSError:
            self.faults += 1
            self._path = None
            self._n = min(capacity, _RAM_CAPACITY)
            self._ring = Ring(None, msg_size + _HDR, self._n)
        self.head = self._ring.first_seq  # seq of the next message to send
        if self._path is not None:
            h = self._load_head()
            if h > self.head:
                self.head = h
        self._trim()
        self._saved = self.head

    # -- head checkpoint ----------------------------------------------------------
    def _load_head(self):
        try:
            with open(self._path + "/head", "rb") as f:
                if f.readinto(self._hb) != 8:
                    return -1
        except OSError:
            return -1
        seq, crc = struct.unpack(_HEAD_FMT, self._hb)
        if crc != crc32(memoryview(self._hb)[:4]) or seq > self._ring.next_seq:
            return -1
        return seq

    def checkpoint(self):
        """Persist the send position if it moved (called with the hot-record commit)."""
        if self._path is None or self.head == self._saved:
            return
        struct.pack_into("<I", self._hb, 0, self.head)
        struct.pack_into("<I", self._hb, 4, crc32(memoryview(self._hb)[:4]))
        try:
            with open(self._path + "/head", "wb") as f:
                f.write(self._hb)
            self._saved = self.head
        except OSError:
            self.faults += 1
            if self.on_error is not None:
                self.on_error()

    # -- queue --------------------------------------------------------------------
    @property
    def count(self):
        return self._ring.next_seq - self.head

    @property
    def next_seq(self):
        return self._ring.next_seq

    @property
    def seq(self):
        """The number of the newest message. Messages are numbered from 1 (ring seq + 1); put()
        gives the next one seq + 1, and the payload carries it (docs/protocol.md)."""
        return self._ring.next_seq

    def _trim(self):
        r = self._ring
        lo = r.next_seq - self._n
        if lo < r.first_seq:
            lo = r.first_seq
        if self.head < lo:
            self.dropped += lo - self.head
            self.head = lo

    def put(self, kind, payload):
        """Queue a message; returns its outbox seq, or -1 if it was dropped (too long)."""
        n = len(payload)
        if n > self._size or not 0 <= kind < 256:
            self.dropped += 1
            return -1
        r = self._rec
        r[0] = kind
        r[1] = n & 0xFF
        r[2] = n >> 8
        r[_HDR:_HDR + n] = payload
        try:
            seq = self._ring.append(memoryview(r)[:_HDR + n])
        except OSError:
            self.faults += 1
            if self.on_error is not None:
                self.on_error()  # remount, then try once more
            seq = self._append_or_fallback(n)
        self._trim()
        return seq

    def _append_or_fallback(self, n):
        r = self._rec
        try:
            return self._ring.append(memoryview(r)[:_HDR + n])
        except OSError:
            # The flash refuses: keep sending from RAM; what was queued on flash is lost.
            self.faults += 1
            self.dropped += self.count
            self._path = None
            self._n = min(self._n, _RAM_CAPACITY)
            nxt = self._ring.next_seq
            self._ring = Ring(None, self._size + _HDR, self._n)
            # The numbering goes on: what was lost shows as a gap that backfill reports as gone.
            self._ring.first_seq = self._ring.next_seq = nxt
            self.head = nxt
            self._peeked = None
            return self._ring.append(memoryview(r)[:_HDR + n])

    def peek(self):
        """(kind, payload bytes) of the oldest unsent message; IndexError when empty. The result is
        cached, so retrying a send while the link is down reads no flash and allocates nothing."""
        if self._peeked is not None and self._peek_seq == self.head and self.count > 0:
            return self._peeked
        while self.count > 0:
            for _ in range(_READ_TRIES):  # a read error may be transient
                if self._ring.read(self.head, self._rec):
                    r = self._rec
                    n = r[1] | (r[2] << 8)
                    if n <= self._size:
                        self._peek_seq = self.head
                        self._peeked = (r[0], bytes(r[_HDR:_HDR + n]))
                        return self._peeked
            self.head += 1  # unreadable: skip it, and say so
            self.dropped += 1
        raise IndexError("outbox empty")

    def pop(self):
        if self.count > 0:
            self.head += 1

    def replay_from(self, seq):
        """Backfill: queue again every retained message numbered `seq` or later. Returns the number
        of the first message from `seq` on that will go out: `seq` itself, or later when older ones
        have rotated out (the backfill reply's "from"), or 0 when nothing at or after `seq` is
        held. Never skips a message not yet sent, even one older than `seq`."""
        r = self._ring
        s = seq - 1
        if s < r.first_seq:
            s = r.first_seq
        if s >= r.next_seq:
            return 0
        if s < self.head:
            self.head = s
            self._trim()  # what is beyond capacity stays out: it would be dropped at the next put
        # Everything from max(s, head) on goes out; messages before s still pending also do,
        # but the answer names the first one of what was asked for.
        return (s if s > self.head else self.head) + 1
