# The firmware's release version, MAJOR.MINOR.PATCH. The meter image's build sets the app
# descriptor's version from this line (boards/esp32_meter/mpconfigboard.cmake), so the image and
# the code in it agree; the update path compares versions numerically (ota.py, docs/ota.md).
VERSION = "1.0.0"
