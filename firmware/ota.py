# Firmware update over the air (docs/ota.md): a signed manifest starts a job, the image streams
# into the next OTA slot one flash block at a time, is read back and hashed, the bootloader is told
# to boot it, and the new firmware keeps it only after its own trial (record, chip, relay,
# backend). Otherwise the next reset rolls back to the old image, which reports it.
#
# The job lives in its own A/B record (ota.a/ota.b: state, next block, the manifest's signed
# bytes), committed every _SAVE_EVERY blocks: a power cut costs at most that many blocks of
# transfer, never the record. The image never sits in RAM: one 4 KiB block buffer, filled by
# 1 KiB chunks the meter asks for (pm/v1/<id>/fwreq, QoS 0, RAM only) and the backend sends
# (pm/v1/<id>/fw: 4-byte big-endian offset, then the bytes). Metering goes on throughout: a chunk
# costs a copy, a full block one flash write, verification a few blocks per step.
from micropython import const
import struct
import hashlib
import events
import ota_manifest as man
import otadata
import record
import relay as relay_mod
from store import RecordStore

IDLE = const(0)
LOADING = const(1)
READY = const(2)  # verified; the bootloader is (being) told to boot it
VERIFYING = const(3)  # RAM only: stored as LOADING with every block written
TRIAL = const(4)  # RAM only: the new image runs on trial
STATE_NAMES = ("idle", "loading", "ready", "verifying", "trial")

_BLOCK = const(4096)
CHUNK = const(1024)
_CHUNKS = const(4)  # per block
_ALL = const(15)
_SAVE_EVERY = const(16)
_ASK_MS = const(4000)  # a block not complete by then is asked for again ...
_ASK_MAX_MS = const(64000)  # ... backing off to this
_HASH_BLOCKS = const(8)  # read back and hashed per step
_TRIAL_MIN_MS = const(60000)  # the trial watches the meter this long at least
_REC = "<BBHI16s"  # state, spare, manifest length, next block, slot label
_HEAD = const(24)
_DESC = const(32)  # esp_app_desc_t in an app image: after the image and first segment headers
_DESC_MAGIC_LO = const(0x5432)  # 0xABCD5432 in halves: small ints on the ESP32
_DESC_MAGIC_HI = const(0xABCD)
_IMAGE_MAGIC = const(0xE9)


def _unset():
    """None, typed as anything: these members are set only while a job runs (the type checker
    cannot follow the state machine)."""
    return None


def image_version(part):
    """MAJOR.MINOR.PATCH code of the app image in Partition `part` (its app descriptor), or -1."""
    buf = bytearray(_DESC + 48)
    try:
        part.readblocks(0, buf)
    except (OSError, ValueError):
        return -1
    if buf[0] != _IMAGE_MAGIC or struct.unpack_from("<HH", buf, _DESC) != (_DESC_MAGIC_LO, _DESC_MAGIC_HI):
        return -1
    v = bytes(buf[_DESC + 16:_DESC + 48])
    n = v.find(b"\0")
    try:
        return man.vcode((v if n < 0 else v[:n]).decode())
    except UnicodeError:
        return -1


class Updater:
    def __init__(self, m, part, release_key, board_name, trial_s=600):
        self._m = m
        self._part = part
        self.release_key = release_key
        self.board_name = board_name
        self.trial_ms = trial_s * 1000
        self._store = RecordStore(m.board.root + "/ota.a", m.board.root + "/ota.b", _HEAD + man.MAX_TEXT)
        self._buf = _unset()  # the block buffer: 4 KiB of heap only while a job moves bytes
        self.state = IDLE
        self.job = _unset()  # the Manifest
        self.slot = _unset()  # the Partition being written
        self.next = 0  # blocks written (and, once verifying, blocks hashed)
        self.blocks = 0
        self._have = 0  # chunks of the current block received (bits)
        self._asked = 0
        self._wait = _ASK_MS
        self._since = 0
        self._sha = _unset()
        self.running = -1  # version code of the running image
        self.label = None  # its slot
        self.bad_chunks = 0
        self.asks = 0
        self.extra = ""
        self.last = ""  # what happened last (REPL, reply)
        base = m.sync.status_topic[:-6]  # pm/v1/<id>/
        self.topic = base + b"fw"
        self.ask_topic = base + b"fwreq"

    # -- boot -------------------------------------------------------------------
    def boot(self, fallback_version):
        """Find out what runs and finish what a job before the reset left to do."""
        p = self._part
        self.label = otadata.running_label(p)
        self.running = -1
        try:
            self.running = image_version(p(p.RUNNING))
        except (OSError, ValueError):
            pass
        if self.running < 0:
            self.running = man.vcode(fallback_version)  # no readable descriptor: a stock image
        try:
            if not self._store.load():
                return
            st, _, n, nxt, label = struct.unpack_from(_REC, self._store.payload, 0)
            job = man.parse(bytes(self._store.payload[_HEAD:_HEAD + n]))
        except (OSError, ValueError):
            return
        if st == IDLE or type(job) is int:
            return
        self.job = job
        self.slot = self._slot_by_label(label.rstrip(b"\0").decode())
        if self.slot is None:
            self._fail(man.NO_OTA)  # the partition table changed under the job
        elif st == LOADING:
            self._resume(nxt)
        elif st == READY:
            self._after_switch()

    def _resume(self, nxt):
        if self.slot.info()[4] == self.label:
            self._fail(man.NO_OTA)  # never write over the running image
            return
        self.blocks = (self.job.size + _BLOCK - 1) // _BLOCK
        self.next = nxt if nxt <= self.blocks else 0
        if self._buf is None:
            self._buf = bytearray(_BLOCK)
        self._asked = self._m.clock.ticks_ms()  # the first request once the link is up
        self._wait = _ASK_MS
        self.state = LOADING
        self._have = 0
        if self.next == self.blocks:
            self._verify_start()

    def _after_switch(self):
        """A verified job after a reset: on trial in the new image, or back in the old one."""
        sel = otadata.selection(self._part)
        target = self.slot.info()[4]
        if self.label == target:
            if sel is not None and sel[1] == otadata.PENDING_VERIFY:
                self.state = TRIAL
                self._since = self._m.clock.ticks_ms()
            else:
                self._done()  # already marked valid before a power cut: only the report is left
            return
        if sel is not None and sel[0] == target and sel[1] in (otadata.ABORTED, otadata.INVALID,
                                                              otadata.PENDING_VERIFY):
            # The bootloader tried it and went back: the new image failed its trial or crashed.
            self._say(events.OTA_ROLLED_BACK, self.job.vcode)
            self.last = "rolled back from %s" % self.job.version
            self._clear()
            return
        # Not switched yet (the power went before the OTA data was written): switch again.
        self.state = READY

    def _slot_by_label(self, label):
        for s in self._part.find(0, 0xFF, label):
            return s
        return None

    # -- commands -----------------------------------------------------------------
    def start(self, text, sig):
        """The `ota` command: True if the job runs (new or the same one again); else self.extra
        says why not. Nothing changes on a refusal."""
        j = self.job
        if j is not None and j.text == text:
            self.last = "job %s %s" % (j.version, STATE_NAMES[self.state])
            return True  # the backend re-sent it (lost reply): the same job goes on
        if self.state not in (IDLE, LOADING):
            return self._refuse(man.BUSY)
        m = man.verify(text, sig, self.release_key)
        if type(m) is int:
            return self._refuse(m)
        try:
            slot = self._part(self._part.RUNNING).get_next_update()
            size = slot.info()[3]
        except (OSError, ValueError, AttributeError):
            return self._refuse(man.NO_OTA)
        why = man.admissible(m, self.board_name, self.running, record.VERSION, size)
        if why is not None:
            return self._refuse(why)
        try:
            buf = self._buf or bytearray(_BLOCK)
        except MemoryError:
            return self._refuse(man.BUSY)  # no 4 KiB in one piece now: the backend tries again later
        old = self.job, self.slot, self.state, self.next
        self.job, self.slot, self.next, self.blocks = m, slot, 0, (m.size + _BLOCK - 1) // _BLOCK
        if not self._save(LOADING):
            self.job, self.slot, self.state, self.next = old
            self.blocks = (old[0].size + _BLOCK - 1) // _BLOCK if old[0] else 0
            return self._refuse(man.WRITE_FAILED)
        self.state = LOADING
        self._buf = buf
        self._have = 0
        self._wait = _ASK_MS
        self._say(events.OTA_STARTED, m.vcode)
        self.last = "loading %s" % m.version
        self._ask()
        return True

    def cancel(self):
        """The `ota_cancel` command: drop a job that has not switched yet. True if one was dropped."""
        if self.state not in (LOADING, VERIFYING):
            return False
        self._fail(man.CANCELLED)
        return True

    def _refuse(self, why):
        self.extra = ',"why":"%s"' % man.REASONS[why]
        self.last = "refused: " + man.REASONS[why]
        return False

    def take_extra(self):
        e = self.extra
        self.extra = ""
        return e

    # -- transfer -------------------------------------------------------------------
    def _ask(self):
        """Ask for what the current block still lacks (from its first missing chunk)."""
        link = self._m.sync.link
        self._asked = self._m.clock.ticks_ms()
        if link is None or link.state != 1:
            return
        k = 0
        while self._have >> k & 1:
            k += 1
        off = self.next * _BLOCK + k * CHUNK
        end = self.next * _BLOCK + _BLOCK
        if end > self.job.size:
            end = self.job.size
        self.asks += 1
        link.publish(self.ask_topic, self._m.sync.signed('{"o":%d,"n":%d,"v":"%s"}' % (
            off, end - off, self.job.version)), 0)

    def chunk(self, payload):
        """A chunk from the backend. Anything not for the block being filled is ignored: the
        image's SHA-256 and the meter's own requests decide what is kept, not the sender."""
        if self.state != LOADING or len(payload) < 5:
            return
        off = struct.unpack_from(">I", payload, 0)[0]
        base = self.next * _BLOCK
        k = (off - base) // CHUNK
        want = self.job.size - off
        if want > CHUNK:
            want = CHUNK
        if off < base or off % CHUNK or k >= _CHUNKS or len(payload) - 4 != want:
            self.bad_chunks += 1
            return
        self._buf[k * CHUNK:k * CHUNK + want] = memoryview(payload)[4:]
        self._have |= 1 << k
        last = (self.job.size - base + CHUNK - 1) // CHUNK  # chunks in this block
        if self._have == (_ALL if last >= _CHUNKS else (1 << last) - 1):
            self._write_block()

    def _write_block(self):
        n = self.job.size - self.next * _BLOCK
        if n < _BLOCK:
            for i in range(n, _BLOCK):
                self._buf[i] = 0xFF
        try:
            self.slot.writeblocks(self.next, self._buf)
        except OSError:
            self._fail(man.WRITE_FAILED)
            return
        self.next += 1
        self._have = 0
        self._wait = _ASK_MS
        if self.next == self.blocks:
            self._save(LOADING)
            self._verify_start()
            return
        if self.next % _SAVE_EVERY == 0:
            self._save(LOADING)  # a failure only costs blocks after a power cut
        self._ask()

    def _verify_start(self):
        self.state = VERIFYING
        self._sha = hashlib.sha256()
        self.next = 0

    def _verify_some(self):
        buf = self._buf
        for _ in range(_HASH_BLOCKS):
            if self.next == self.blocks:
                break
            try:
                self.slot.readblocks(self.next, buf)
            except OSError:
                self._fail(man.WRITE_FAILED)
                return
            n = self.job.size - self.next * _BLOCK
            self._sha.update(buf if n >= _BLOCK else memoryview(buf)[:n])
            self.next += 1
        if self.next < self.blocks:
            return
        if self._sha.digest() != self.job.sha256:
            self._fail(man.HASH_MISMATCH)
        elif image_version(self.slot) != self.job.vcode:
            self._fail(man.BAD_IMAGE)  # signed, but not the version it claims: never boot it
        elif self._save(READY):
            self.state = READY
        else:
            self._fail(man.WRITE_FAILED)

    # -- the switch and the trial ---------------------------------------------------------
    def _switch(self):
        try:
            self.slot.set_boot()  # the port checks the image (esp_image_verify) first
        except OSError:
            self._fail(man.BAD_IMAGE)
            return
        self.last = "rebooting into %s" % self.job.version
        self._reset()

    def _reset(self):
        m = self._m
        m.sync.forward_events(m.events)  # this boot's events reach the outbox on flash first
        m.commit()
        m.board.reset()

    def _trial(self, now):
        m = self._m
        if m.clock.ticks_diff(now, self._since) < _TRIAL_MIN_MS:
            return
        link = m.sync.link
        ok = (not m.foreign and m.store.damaged == 0 and m.metering.ok
              and not m.relay.reasons & relay_mod.FAULT
              and (link is None or link.state == 1))
        if ok:
            try:
                self._part.mark_app_valid_cancel_rollback()
            except OSError:
                return  # try again next step; the trial deadline still applies
            self._done()
        elif m.clock.ticks_diff(now, self._since) >= self.trial_ms:
            self._say(events.OTA_FAILED, man.SELFTEST + 1)
            self.last = "trial failed"
            self._reset()  # the bootloader goes back to the old image

    def _say(self, code, arg):
        """Raise an event and put it in the outbox on flash at once: the job record that it
        reports on is cleared next, and after that nothing could tell the outcome again."""
        m = self._m
        m.emit(code, arg)
        m.sync.forward_events(m.events)

    def _done(self):
        self._say(events.OTA_DONE, self.job.vcode)
        self.running = self.job.vcode
        self.last = "running %s" % self.job.version
        self._clear()

    def step(self, now):
        st = self.state
        if st == LOADING:
            if self._m.clock.ticks_diff(now, self._asked) >= self._wait:
                self._wait = self._wait * 2 if self._wait < _ASK_MAX_MS else _ASK_MAX_MS
                self._ask()
        elif st == VERIFYING:
            self._verify_some()
        elif st == READY:
            self._switch()
        elif st == TRIAL:
            self._trial(now)

    # -- the job record -----------------------------------------------------------------
    def _save(self, st):
        p = self._store.payload
        text = self.job.text if self.job is not None else b""
        label = self.slot.info()[4].encode() if self.slot is not None else b""
        struct.pack_into(_REC, p, 0, st, 0, len(text), self.next if st != READY else self.blocks, label)
        p[_HEAD:_HEAD + len(text)] = text
        try:
            self._store.commit()
            return True
        except OSError:
            return False

    def _fail(self, why):
        self._say(events.OTA_FAILED, why + 1)
        self.last = "failed: " + man.REASONS[why]
        self._clear()

    def _clear(self):
        self.job = None
        self.state = IDLE
        self.slot = None
        self._sha = None
        self._buf = None
        self._save(IDLE)  # a failed commit leaves the job on flash: the next boot finds it done or
        # failed the same way (LOADING resumes only what the backend still sends)

    def progress(self):
        """(state name, blocks done, blocks in all, version or None) for the REPL and status."""
        return (STATE_NAMES[self.state], self.next, self.blocks,
                self.job.version if self.job is not None else None)
