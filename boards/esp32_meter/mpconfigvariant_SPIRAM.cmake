# The meter image for modules with PSRAM (ESP32-WROVER), as ESP32_GENERIC's SPIRAM variant.
list(APPEND SDKCONFIG_DEFAULTS boards/sdkconfig.spiram)

list(APPEND MICROPY_DEF_BOARD
    MICROPY_HW_BOARD_NAME="ESP32 prepaid meter with SPIRAM"
)
