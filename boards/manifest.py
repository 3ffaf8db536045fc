# Freeze manifest of the ESP32 meter image (docs/deploy.md, "Frozen meter image"), named by the
# board definition boards/esp32_meter/ (make -C ports/esp32 BOARD_DIR=<repo>/boards/esp32_meter).
# The port's own manifest brings _boot/inisetup, asyncio and umqtt.simple from micropython-lib;
# ours adds the firmware and the board modules.
include("$(PORT_DIR)/boards/manifest.py")
include("manifest_firmware.py")
