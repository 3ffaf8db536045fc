"""esp32 stand-in (boards/esp32port/esp32.py, esp32flash.py): partitions of ESP32_GENERIC's 4 MiB
table or of a CSV, on a flash image with NOR semantics, mountable as the port mounts them."""
from pathlib import Path

USES_MICROPYTHON = True
REPO = Path(__file__).resolve().parents[3]


def test_generic_table_and_the_vfs_partition_the_port_adds(esp32, tmp_path):
    r = esp32("""
import mptest, esp32world as W
W.setup({"flash": %r})
from esp32 import Partition
app = Partition.find(Partition.TYPE_APP)
mptest.eq([p.info()[4] for p in app], ["factory"], "one app partition")
mptest.eq(app[0].info()[2:4], (0x10000, 0x1F0000), "factory at 64 KiB")
vfs = Partition.find(Partition.TYPE_DATA, label="vfs")
mptest.eq(len(vfs), 1, "a vfs partition")
mptest.eq(vfs[0].info(), (1, 0x81, 0x200000, 0x200000, "vfs", False), "the 2 MiB the port adds after the app")
mptest.eq(vfs[0].ioctl(4, 0), 512, "4096-byte blocks")
mptest.eq(Partition.find(Partition.TYPE_DATA, label="meter"), [], "no meter partition on a stock table")
mptest.eq([p.info()[4] for p in Partition.find(Partition.TYPE_DATA)], ["nvs", "phy_init", "vfs"], "data partitions")
mptest.eq(Partition(Partition.RUNNING).info()[4], "factory", "the running app")
mptest.raises(OSError, Partition, "nope")
import flashbdev
mptest.eq(flashbdev.bdev.info()[4], "vfs", "flashbdev names the root file system's partition")
mptest.done()
""" % str(tmp_path / "flash.img"))
    assert r["ok"], r["failures"]
    assert (tmp_path / "flash.img").stat().st_size == 4 * 1024 * 1024


def test_csv_table_nor_writes_and_littlefs_with_the_ports_geometry(esp32, tmp_path):
    csv = REPO / "boards" / "esp32_meter" / "partitions.csv"
    r = esp32("""
import mptest, esp32world as W, vfs, os
W.setup({"flash": %r, "partitions": %r})
from esp32 import Partition
m = Partition.find(Partition.TYPE_DATA, label="meter")[0]
mptest.eq(m.info(), (1, 0x83, 0x200000, 0x1F0000, "meter", False), "the meter partition of the CSV")
v = Partition.find(Partition.TYPE_DATA, label="vfs")[0]
mptest.eq(v.info()[2:4], (0x3F0000, 0x10000), "vfs as the CSV says, nothing added")
buf = bytearray(4096)
v.readblocks(0, buf)
mptest.check(all(b == 0xFF for b in buf), "blank flash reads all ones")
v.writeblocks(0, b"\\x0f" * 16, 0)
v.writeblocks(0, b"\\xf3" * 16, 0)
small = bytearray(16)
v.readblocks(0, small, 0)
mptest.eq(bytes(small), b"\\x03" * 16, "a write only clears bits (NOR flash)")
v.ioctl(6, 0)
v.readblocks(0, small, 0)
mptest.eq(bytes(small), b"\\xff" * 16, "erased")
v.writeblocks(1, b"\\x0f" * 4096)
v.writeblocks(1, b"\\xf0" * 4096)
v.readblocks(1, small)
mptest.eq(bytes(small), b"\\xf0" * 16, "a plain writeblocks erases first")
mptest.raises(OSError, v.readblocks, 16, buf)  # past the end of the partition
# The port's _boot.py: vfs.mount(bdev, "/") finds littlefs with VfsLfs2's defaults.
v.ioctl(6, 1)
vfs.VfsLfs2.mkfs(v)
vfs.mount(v, "/flash")
with open("/flash/board.txt", "w") as f:
    f.write("esp32-atm90e26")
vfs.umount("/flash")
vfs.mount(vfs.VfsLfs2(v, readsize=32, progsize=32, lookahead=32), "/flash")
mptest.eq(open("/flash/board.txt").read(), "esp32-atm90e26", "mounted again, the file is there")
vfs.umount("/flash")
mptest.done()
""" % (str(tmp_path / "flash.img"), str(csv)))
    assert r["ok"], r["failures"]
