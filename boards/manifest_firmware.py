# Freeze manifest: the meter firmware and the real boards (bytecode in flash, not in the heap).
# Included by boards/manifest.py (the ESP32 image) and tools/mp32/manifest.py (the host's 32-bit
# build), so both freeze exactly the same modules. main.py is frozen too: the ESP32 port runs a
# frozen main.py at boot, before looking at the file system.
freeze("../firmware")
module("esp32_atm90e26.py")
module("esp32_atm90e32.py")
module("esp32_ade7953.py")
