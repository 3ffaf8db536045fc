// ESP32 prepaid meter image (boards/esp32_meter/mpconfigboard.cmake); a variant may name it.
#ifndef MICROPY_HW_BOARD_NAME
#define MICROPY_HW_BOARD_NAME "ESP32 prepaid meter"
#endif

#ifndef MICROPY_HW_MCU_NAME
#define MICROPY_HW_MCU_NAME "ESP32"
#endif
