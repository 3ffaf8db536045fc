"""boards/esp32_meter: the meter image's partition tables (ESP-IDF CSV) and board definition.

A table is flashed with the image, so a mistake here bricks a meter or loses its data: the checks
follow ESP-IDF's rules (gen_esp32part.py), and every app partition must hold the frozen image. The
OTA variant (partitions-ota.csv, 8 MiB) is held to the same rules, with two app slots and OTA data."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BOARD_DIR = REPO / "boards" / "esp32_meter"
CSV = BOARD_DIR / "partitions.csv"
OTA_CSV = BOARD_DIR / "partitions-ota.csv"

FLASH = 0x400000  # 4 MiB, the ESP32-WROOM/WROVER-32 flash the table is for
OTA_FLASH = 0x800000  # 8 MiB, the -N8 modules the OTA table is for
TABLE_END = 0x8000 + 0x1000  # the partition table itself sits at 0x8000 (one sector)
TYPES = {"app": 0x00, "data": 0x01}
SUBTYPES = {"app": {"factory": 0x00, **{"ota_%d" % i: 0x10 + i for i in range(16)}},
            "data": {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "fat": 0x81, "spiffs": 0x82, "littlefs": 0x83}}
ALIGN = {"app": 0x10000, "data": 0x1000}
ENTRY, MAX_TABLE = 32, 0xC00  # binary entry size; the table and its MD5 row must fit in 0xC00
# What the stock ESP32_GENERIC app takes: 1 669 037 to 1 708 393 bytes measured across ESP-IDF 5.0
# to 5.2 (micropython PR #15523); budgeted with room for MicroPython 1.28/1.29 growth.
STOCK_APP_BUDGET = 1800000
# Frozen bytecode in the image over the size of the same .mpy files: 1.09 measured on the 32-bit
# host build (frozen_content.o 132 685 bytes for 122 105 bytes of .mpy); budgeted at 3/2.
FROZEN_NUM, FROZEN_DEN = 3, 2
APP_HEADROOM = 16 * 1024  # never fill the app partition to the last byte


def parse(text):
    """The partitions of an ESP-IDF CSV as dicts (name, type, subtype, offset, size, flags)."""
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        f = [c.strip() for c in (line + ",,").split(",")]
        name, ptype, sub, off, size, flags = f[:6]
        assert ptype in TYPES, "line %d: type %r" % (n, ptype)
        subtype = SUBTYPES[ptype][sub] if sub in SUBTYPES[ptype] else int(sub, 0)
        rows.append({"name": name, "type": ptype, "subtype": subtype, "offset": int(off, 0),
                     "size": int(size, 0), "flags": flags, "line": n})
    return rows


@pytest.fixture(scope="module")
def table():
    return parse(CSV.read_text())


@pytest.fixture(scope="module")
def ota_table():
    return parse(OTA_CSV.read_text())


def by_name(table, name):
    found = [p for p in table if p["name"] == name]
    assert len(found) == 1, "partition %r: %d entries" % (name, len(found))
    return found[0]


def test_partitions_are_aligned_do_not_overlap_and_fit_4_mib(table):
    fits(table, FLASH)


def fits(table, flash):
    names = [p["name"] for p in table]
    assert len(names) == len(set(names)), names
    end = TABLE_END
    for p in sorted(table, key=lambda p: p["offset"]):
        assert 0 < len(p["name"]) <= 15, p  # a 16-byte field with its NUL
        assert p["offset"] % ALIGN[p["type"]] == 0, "%s: offset 0x%x not aligned" % (p["name"], p["offset"])
        assert p["size"] > 0 and p["size"] % 0x1000 == 0, "%s: size 0x%x not whole sectors" % (p["name"], p["size"])
        assert p["offset"] >= end, "%s at 0x%x overlaps what ends at 0x%x" % (p["name"], p["offset"], end)
        assert p["flags"] == "", p  # nothing encrypted or read-only
        end = p["offset"] + p["size"]
    assert end <= flash, "the table ends at 0x%x, past 0x%x" % (end, flash)
    assert (len(table) + 1) * ENTRY < MAX_TABLE  # the entries and the MD5 row


def test_the_layout_the_port_and_the_board_expect(table):
    apps = [p for p in table if p["type"] == "app"]
    assert [p["name"] for p in apps] == ["factory"] and apps[0]["offset"] == 0x10000
    assert not [p for p in table if p["type"] == "data" and p["subtype"] == 0x00], "no OTA data"
    data_layout(table)


def data_layout(table):
    nvs = by_name(table, "nvs")
    assert nvs["type"] == "data" and nvs["subtype"] == 0x02 and nvs["offset"] == 0x9000  # makeimg.py
    assert nvs["size"] >= 0x3000  # ESP-IDF's minimum for a read-write NVS
    assert by_name(table, "phy_init")["subtype"] == 0x01
    # The root file system: the port's _boot.py mounts the partition labelled "vfs" (and adds
    # none of its own when there is one). It holds board.txt, secrets.json, the CA and boot.py.
    vfs = by_name(table, "vfs")
    assert vfs["type"] == "data" and vfs["size"] >= 16 * 4096
    # /data: the board mounts the partition labelled esp32_atm90e26.DATA_LABEL
    import esp32_atm90e26
    meter = by_name(table, esp32_atm90e26.DATA_LABEL)
    assert meter["type"] == "data" and meter["subtype"] == 0x83  # littlefs' registered subtype
    # Sized for the logs at full size with room to spare (test_esp32_storage.py fills them) and
    # for the wear target (bench/storage.py): it must stay most of the 2 MiB the stock image
    # gives its root file system.
    assert meter["size"] >= 0x1E0000, "meter partition 0x%x" % meter["size"]


def frozen_mpy_bytes(tmp_path):
    """Bytes of .mpy the image freezes (boards/manifest_firmware.py: firmware/ and the esp32
    boards), compiled here for the ESP32 (xtensawin) as tools/build.py does."""
    manifest = (REPO / "boards" / "manifest_firmware.py").read_text()
    assert 'freeze("../firmware")' in manifest
    modules = [line.split('"')[1] for line in manifest.splitlines() if line.startswith("module(")]
    assert modules and all(m.startswith("esp32_") for m in modules), modules
    sources = sorted((REPO / "firmware").glob("*.py")) + [REPO / "boards" / m for m in modules]
    sys.path.insert(0, str(REPO / "tools"))
    import build
    cross = build.mpy_cross()
    total = 0
    for src in sources:
        out = tmp_path / (src.stem + ".mpy")
        subprocess.run(cross + ["-march=xtensawin", "-o", str(out), str(src)], check=True, capture_output=True)
        total += out.stat().st_size
    return total, len(sources)


@pytest.fixture(scope="module")
def app_need(tmp_path_factory):
    """Bytes an app partition must hold: the stock app, the frozen firmware, the headroom."""
    mpy, count = frozen_mpy_bytes(tmp_path_factory.mktemp("mpy"))
    assert count > 30 and mpy > 50000  # the whole firmware was compiled
    return STOCK_APP_BUDGET + mpy * FROZEN_NUM // FROZEN_DEN + APP_HEADROOM, mpy


def test_the_app_partition_holds_the_stock_app_and_the_frozen_firmware(table, app_need):
    need, mpy = app_need
    have = by_name(table, "factory")["size"]
    assert need <= have, "app partition 0x%x < %d bytes (stock app %d + frozen %d x %d/%d + %d)" % (
        have, need, STOCK_APP_BUDGET, mpy, FROZEN_NUM, FROZEN_DEN, APP_HEADROOM)


# -- the OTA variant ------------------------------------------------------------------------------
def test_ota_partitions_are_aligned_do_not_overlap_and_fit_8_mib(ota_table):
    fits(ota_table, OTA_FLASH)
    end = max(p["offset"] + p["size"] for p in ota_table)
    assert end > FLASH, "this layout would fit a 4 MiB module: it needs no 8 MiB table"


def test_the_ota_layout_two_slots_ota_data_and_the_meters_data(ota_table):
    data_layout(ota_table)
    apps = sorted((p for p in ota_table if p["type"] == "app"), key=lambda p: p["offset"])
    # Two OTA slots and no factory app: the bootloader's fallback is the other slot, and the
    # running one is never written (esp_ota_get_next_update_partition picks the other).
    assert [(p["name"], p["subtype"]) for p in apps] == [("ota_0", 0x10), ("ota_1", 0x11)]
    assert apps[0]["offset"] == 0x10000 and apps[0]["size"] == apps[1]["size"], apps
    # ESP-IDF's OTA data: exactly two sectors (an entry in each), at a sector boundary.
    od = [p for p in ota_table if p["type"] == "data" and p["subtype"] == 0x00]
    assert [p["name"] for p in od] == ["otadata"]
    assert od[0]["size"] == 0x2000 and od[0]["offset"] % 0x1000 == 0, od
    # The meter's data keeps its size and place relative to the 4 MiB image's rules.
    assert by_name(ota_table, "meter")["size"] == by_name(parse(CSV.read_text()), "meter")["size"]


def test_each_ota_slot_holds_the_stock_app_and_the_frozen_firmware(ota_table, app_need):
    need, mpy = app_need
    for p in ota_table:
        if p["type"] == "app":
            assert need <= p["size"], "%s 0x%x < %d bytes (stock app %d + frozen %d x %d/%d + %d)" % (
                p["name"], p["size"], need, STOCK_APP_BUDGET, mpy, FROZEN_NUM, FROZEN_DEN, APP_HEADROOM)


def test_the_host_reads_the_ota_table_as_the_csv_says(ota_table):
    # esp32flash (the host's flash) and this test parse the same file alike
    sys.path.insert(0, str(REPO / "tools"))
    import esp32_host
    flash = esp32_host.port_module("esp32flash")
    parts = flash.parse_table(OTA_CSV.read_text(), OTA_FLASH)
    assert [(p[0], p[1], p[2], p[3], p[4]) for p in parts] == [
        (p["name"], TYPES[p["type"]], p["subtype"], p["offset"], p["size"]) for p in ota_table]


def firmware_version():
    import re
    m = re.search(r'^VERSION = "(\d+\.\d+\.\d+)"$', (REPO / "firmware" / "version.py").read_text(), re.M)
    assert m, "firmware/version.py: no line VERSION = \"X.Y.Z\""
    return m.group(1)


def sdkconfig(paths):
    """The settings the port's CMakeLists.txt makes of SDKCONFIG_DEFAULTS (files concatenated in
    order, a later line overriding an earlier one). The port's own files are not here: they are
    stood in for by what they set that this board overrides."""
    port = {"boards/sdkconfig.base": "CONFIG_ESPTOOLPY_FLASHSIZE_4MB=y\nCONFIG_PARTITION_TABLE_CUSTOM=y\n"
                                     "CONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\"partitions-4MiBplus.csv\"\n"
                                     "CONFIG_APP_EXCLUDE_PROJECT_VER_VAR=y\nCONFIG_APP_EXCLUDE_PROJECT_NAME_VAR=y\n"
                                     "CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y\n",
            "boards/sdkconfig.ble": "", "boards/sdkconfig.spiram": ""}
    out = {}
    for p in paths:
        text = port[p] if p in port else Path(p).read_text()
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                k, _, v = line.partition("=")
                if k.startswith("CONFIG_ESPTOOLPY_FLASHSIZE_") and v == "y":
                    out = {key: val for key, val in out.items() if not key.startswith("CONFIG_ESPTOOLPY_FLASHSIZE_")}
                out[k] = v
    return out


@pytest.mark.parametrize("variant", [None, "SPIRAM", "OTA"])
def test_the_board_cmake_as_the_port_includes_it(variant, tmp_path):
    """Run the board's cmake files as ports/esp32/CMakeLists.txt includes them (before project()):
    the version, the sdkconfig fragments and the table each variant ends up with."""
    import shutil
    if not shutil.which("cmake"):
        pytest.skip("cmake is not installed (the text checks below still run)")
    script = tmp_path / "board.cmake"
    script.write_text(
        'set(CMAKE_BINARY_DIR "%s")\nset(MICROPY_BOARD_DIR "%s")\n'
        'include(${MICROPY_BOARD_DIR}/mpconfigboard.cmake)\n%s'
        'message("PROJECT_VER=${PROJECT_VER}")\nmessage("DEFAULTS=${SDKCONFIG_DEFAULTS}")\n'
        'message("DEF_BOARD=${MICROPY_DEF_BOARD}")\n' % (
            tmp_path, BOARD_DIR,
            "include(${MICROPY_BOARD_DIR}/mpconfigvariant_%s.cmake)\n" % variant if variant else ""))
    p = subprocess.run(["cmake", "-P", str(script)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    got = dict(line.split("=", 1) for line in p.stderr.splitlines() if "=" in line)
    assert got["PROJECT_VER"] == firmware_version(), "the app descriptor's version is the firmware's"
    cfg = sdkconfig(got["DEFAULTS"].split(";"))
    table = OTA_CSV if variant == "OTA" else CSV
    assert cfg["CONFIG_PARTITION_TABLE_CUSTOM_FILENAME"] == '"%s"' % table
    assert cfg["CONFIG_APP_EXCLUDE_PROJECT_VER_VAR"] == "n", "else PROJECT_VER never reaches the descriptor"
    assert cfg["CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE"] == "y"
    if variant == "OTA":
        assert cfg.get("CONFIG_ESPTOOLPY_FLASHSIZE_8MB") == "y" and "CONFIG_ESPTOOLPY_FLASHSIZE_4MB" not in cfg
        assert 'MICROPY_HW_BOARD_NAME="ESP32 prepaid meter with OTA"' in got["DEF_BOARD"]
    else:
        assert cfg.get("CONFIG_ESPTOOLPY_FLASHSIZE_4MB") == "y"


def test_the_ota_variant_files():
    cmake = (BOARD_DIR / "mpconfigvariant_OTA.cmake").read_text()
    assert "${MICROPY_BOARD_DIR}/partitions-ota.csv" in cmake and "sdkconfig.meter_partitions" in cmake
    assert "list(APPEND SDKCONFIG_DEFAULTS ${MICROPY_BOARD_DIR}/sdkconfig.ota)" in cmake
    ota = (BOARD_DIR / "sdkconfig.ota").read_text().splitlines()
    assert "CONFIG_ESPTOOLPY_FLASHSIZE_8MB=y" in ota and "CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y" in ota
    board = (BOARD_DIR / "sdkconfig.board").read_text().splitlines()
    assert "CONFIG_APP_EXCLUDE_PROJECT_VER_VAR=n" in board
    # The board cmake takes PROJECT_VER from the line this pattern (its REGEX) matches.
    board_cmake = (BOARD_DIR / "mpconfigboard.cmake").read_text()
    assert "firmware/version.py" in board_cmake and "PROJECT_VER" in board_cmake
    assert firmware_version()


def test_the_board_definition_builds_the_image_with_this_table():
    cmake = (BOARD_DIR / "mpconfigboard.cmake").read_text()
    assert '${MICROPY_BOARD_DIR}/partitions.csv' in cmake and "CONFIG_PARTITION_TABLE_CUSTOM=y" in cmake
    # the fragment naming the table comes after sdkconfig.base, which names the stock one
    defaults = cmake[cmake.index("set(SDKCONFIG_DEFAULTS"):]
    assert defaults.index("sdkconfig.base") < defaults.index("sdkconfig.meter_partitions")
    assert "${MICROPY_BOARD_DIR}/../manifest.py" in cmake and (REPO / "boards" / "manifest.py").is_file()
    assert (BOARD_DIR / "mpconfigboard.h").is_file()
