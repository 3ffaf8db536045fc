# Frozen into the host's 32-bit MicroPython (tools/build_mp32.py): the same firmware and boards
# as the ESP32 image, umqtt.simple (fetched by tools/fetch_umqtt.py; frozen in the stock ESP32
# image), the simulated boards with their emulators, and the ESP32 port stand-ins. The stand-ins
# are frozen as package esp32port so they shadow the unix port's built-ins only where a run puts
# .frozen/esp32port on its path.
include("../../boards/manifest_firmware.py")
module("umqtt/simple.py", base_path="../../.deps/mplib")
module("sim_atm90e26.py", base_path="../../boards")
module("sim_atm90e32.py", base_path="../../boards")
module("sim_ade7953.py", base_path="../../boards")
module("sim_powercut.py", base_path="../../boards")
package("simhw", base_path="../../boards")
package("esp32port", base_path="../../boards")
