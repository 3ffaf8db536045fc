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
    ${CMAKE_BINARY_DIR}/sdkconfig.meter_partitions
)

set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/../manifest.py)
