# The meter image with updates over the air, for modules with 8 MiB of flash (ESP32-WROOM-32E-N8
# and the like): partitions-ota.csv (two app slots, OTA data) and sdkconfig.ota, as ESP32_GENERIC's
# OTA variant does for its own table.
#   make -C <micropython>/ports/esp32 BOARD_DIR=<this repo>/boards/esp32_meter BOARD_VARIANT=OTA
# The table's absolute path replaces partitions.csv in the fragment mpconfigboard.cmake wrote (it
# is already last in SDKCONFIG_DEFAULTS, after sdkconfig.base), for the reason given there.
file(WRITE ${CMAKE_BINARY_DIR}/sdkconfig.meter_partitions
    "CONFIG_PARTITION_TABLE_CUSTOM=y\nCONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\"${MICROPY_BOARD_DIR}/partitions-ota.csv\"\n")

list(APPEND SDKCONFIG_DEFAULTS ${MICROPY_BOARD_DIR}/sdkconfig.ota)

list(APPEND MICROPY_DEF_BOARD
    MICROPY_HW_BOARD_NAME="ESP32 prepaid meter with OTA"
)
