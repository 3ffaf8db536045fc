# Freeze manifest of the ESP32 meter image (docs/deploy.md, "Frozen image"):
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=<repo>/boards/manifest.py
# The port's own manifest brings _boot/inisetup, asyncio and umqtt.simple from micropython-lib;
# ours adds the firmware and the board modules.
include("$(PORT_DIR)/boards/manifest.py")
include("manifest_firmware.py")
