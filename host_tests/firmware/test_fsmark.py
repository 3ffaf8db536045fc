"""firmware/fsmark.py: the marks that keep a reformat from passing for a new meter until the app
has committed the unknown state (store.mount's results with and without them)."""

SCRIPT = r'''
import os, vfs, mptest, store, fsmark
from simhw.cutdev import CutBlockDevice

def fresh(garbage):
    dev = CutBlockDevice(32)
    if garbage:
        for i in range(len(dev.mem)):
            dev.mem[i] = (i * 13 + 1) & 0xFF
    return dev

def remount(dev):
    vfs.umount("/m")
    return store.mount(dev, "/m")

# Garbage: reformatted, and it stays so at every mount until settled.
dev = fresh(True)
mptest.eq(store.mount(dev, "/m"), store.REFORMATTED, "garbage is reformatted")
mptest.check(".reformatted" in os.listdir("/m"), "and marked")
mptest.eq(remount(dev), store.REFORMATTED, "a mount before the app settled it: still unknown")
with open("/m/state.a", "w") as f:
    f.write("record")
fsmark.settled("/m")
mptest.eq(remount(dev), store.MOUNTED, "settled: mounted")
fsmark.settled("/m")  # again (a cut before the first removal took effect): harmless
vfs.umount("/m")

# A cut between the format and the mark: an empty root over old data is a reformat...
dev = fresh(True)
vfs.VfsLfs2.mkfs(dev, readsize=store.LFS_READ, progsize=store.LFS_PROG)
mptest.eq(store.mount(dev, "/m"), store.REFORMATTED, "empty root over old data")
mptest.check(".reformatted" in os.listdir("/m"), "marked now")
vfs.umount("/m")
# ... over blank flash, a new meter; and a new meter's format leaves its root non-empty.
dev = fresh(False)
vfs.VfsLfs2.mkfs(dev, readsize=store.LFS_READ, progsize=store.LFS_PROG)
mptest.eq(store.mount(dev, "/m"), store.MOUNTED, "empty root over blank flash")
vfs.umount("/m")
dev = fresh(False)
mptest.eq(store.mount(dev, "/m"), store.FORMATTED_BLANK, "blank flash: a factory format")
mptest.eq(os.listdir("/m"), [".formatted"], "its mark")
mptest.eq(remount(dev), store.MOUNTED, "then mounted")
# The marks live in the root's metadata: nothing past the superblock pair was written.
mptest.check(store._never_used(dev), "no block of their own")
vfs.umount("/m")
mptest.done()
'''


def test_marks_and_mount_results(mpy):
    assert mpy(SCRIPT, heap="2m").result["ok"]
