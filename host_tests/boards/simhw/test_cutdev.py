"""boards/simhw/cutdev.py: the RAM flash that loses power or fails on purpose (MicroPython)."""


def test_cut_tears_and_then_refuses_writes(mpy):
    res = mpy("""
import mptest
from simhw.cutdev import CutBlockDevice
d = CutBlockDevice(4, 256)
mptest.eq(d.ioctl(4, 0), 4, "block count")
mptest.eq(d.ioctl(5, 0), 256, "block size")
d.cut_at = 3
mptest.eq(d.writeblocks(0, b"\\x01" * 8, 0), 0, "write 1 lands")
mptest.eq(d.ioctl(6, 1), 0, "erase (write 2) lands")
mptest.eq(d.writeblocks(2, b"\\x02" * 8, 0), -5, "write 3: power lost")
mptest.eq(bytes(d.mem[512:520]), b"\\x02" * 4 + b"\\xff" * 4, "torn: half of it landed")
mptest.check(d.dead and d.cut_kind == 1, "dead after a torn program")
mptest.eq(d.writeblocks(3, b"\\x03" * 8, 0), -5, "later writes refused")
mptest.eq(d.ioctl(6, 0), -5, "later erases refused")
mptest.eq(bytes(d.mem[768:776]), b"\\xff" * 8, "and change nothing")
buf = bytearray(8)
mptest.eq(d.readblocks(0, buf, 0), 0, "reads still work")
mptest.eq(bytes(buf), b"\\x01" * 8, "data")
s = d.survivor()
mptest.check(not s.dead and s.cut_at == 0, "survivor is powered, nothing armed")
mptest.eq(bytes(s.mem), bytes(d.mem), "with the same bytes")
e = CutBlockDevice(2, 256)
e.writeblocks(0, b"\\x00" * 256, 0)
e.cut_at = e.writes + 1  # the next program or erase
mptest.eq(e.ioctl(6, 0), -5, "cut on an erase")
mptest.eq((bytes(e.mem[:128]), bytes(e.mem[128:256])), (b"\\xff" * 128, b"\\x00" * 128), "half erased")
mptest.eq(e.cut_kind, 2, "erase cut recorded")
mptest.done()
""")
    assert res.result["ok"]


def test_io_errors_once_and_sticky(mpy):
    res = mpy("""
import mptest
from simhw.cutdev import CutBlockDevice
buf = bytearray(4)
d = CutBlockDevice(2, 256)
d.fail_at = 2
mptest.eq([d.readblocks(0, buf, 0) for _ in range(4)], [0, -5, 0, 0], "the 2nd operation fails once")
d = CutBlockDevice(2, 256)
d.fail_at = 2
d.sticky = True
mptest.eq([d.readblocks(0, buf, 0), d.writeblocks(0, buf, 0), d.ioctl(6, 0), d.readblocks(0, buf, 0)],
          [0, -5, -5, -5], "from the 2nd operation on")
mptest.eq(d.failures, 3, "counted")
mptest.done()
""")
    assert res.result["ok"]
