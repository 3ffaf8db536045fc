# Built by tools/build_mp32.py (VARIANT_DIR points here). Only modules frozen from the
# project's own sources: the source subset has no micropython-lib, mbedtls, libffi or btree.
MICROPY_FORCE_32BIT = 1
MICROPY_PY_SSL = 0
MICROPY_PY_BTREE = 0
MICROPY_PY_FFI = 0
MICROPY_USE_READLINE = 0
FROZEN_MANIFEST ?= $(VARIANT_DIR)/manifest.py
