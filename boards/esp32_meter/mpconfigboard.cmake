# ESP-IDF board definition of the meter image: ESP32_GENERIC's configuration, the meter's partition
# table (partitions.csv: a "meter" data partition for /data) and the firmware frozen in.
#   make -C <micropython>/ports/esp32 BOARD_DIR=<this repo>/boards/esp32_meter [BOARD_VARIANT=SPIRAM]
# (docs/deploy.md, "Partition table").
set(IDF_TARGET esp32)

# An sdkconfig path is taken relative to the port directory, and sdkconfig files are copied
# without variable expansion: so the table's absolute path goes into a fragment written here,
# which keeps this folder usable from anywhere. Listed last, it overrides sdkconfig.base's table.
file(WRITE ${CMAKE_BINARY_DIR}/sdkconfig.meter_partitions
    "CONFIG_PARTITION_TABLE_CUSTOM=y\nCONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\"${MICROPY_BOARD_DIR}/partitions.csv\"\n")

set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    boards/sdkconfig.ble
    ${MICROPY_BOARD_DIR}/sdkconfig.board
    ${CMAKE_BINARY_DIR}/sdkconfig.meter_partitions
)

# The app descriptor's version is the firmware's release (firmware/version.py), so an image says
# what it holds: the update path reads it from a slot (docs/ota.md). This file is included before
# project(), where ESP-IDF takes PROJECT_VER; sdkconfig.board stops sdkconfig.base from leaving
# it out of the descriptor.
file(STRINGS ${MICROPY_BOARD_DIR}/../../firmware/version.py MICROPY_METER_VERSION_LINE
    REGEX "^VERSION = \"[0-9]+\\.[0-9]+\\.[0-9]+\"")
if(NOT MICROPY_METER_VERSION_LINE)
    message(FATAL_ERROR "firmware/version.py: no line VERSION = \"X.Y.Z\"")
endif()
string(REGEX REPLACE "^VERSION = \"([0-9.]+)\".*" "\\1" PROJECT_VER "${MICROPY_METER_VERSION_LINE}")

set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/../manifest.py)
