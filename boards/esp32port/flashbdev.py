# ESP32 port stand-in: flashbdev, the port's frozen module that names the root file system's
# block device: the data partition labelled "vfs" (or TinyUF2's "ffat", in 512-byte blocks).
from esp32 import Partition

_found = Partition.find(Partition.TYPE_DATA, label="vfs") or Partition.find(
    Partition.TYPE_DATA, label="ffat", block_size=512)
bdev = _found[0] if _found else None
