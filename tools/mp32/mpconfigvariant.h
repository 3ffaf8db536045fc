// The project's 32-bit unix variant: the closest thing to the ESP32 we can run on a host.
// Same word size and small-int range as the ESP32 (31-bit small ints, 4-byte object slots),
// single-precision floats and the ESP32's time epoch (2000-01-01); the firmware, the boards,
// umqtt.simple and the host stand-ins are frozen (bytecode outside the heap, as in flash).
#define MICROPY_CONFIG_ROM_LEVEL (MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES)
#define MICROPY_FLOAT_IMPL (MICROPY_FLOAT_IMPL_FLOAT)
#include "variants/mpconfigvariant_common.h"  // resolved from ports/unix (-I.)
