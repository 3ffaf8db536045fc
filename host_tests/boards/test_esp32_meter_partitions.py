"""boards/esp32_meter: the meter image's partition table (ESP-IDF CSV) and board definition.

The table is flashed with the image, so a mistake here bricks a meter or loses its data: the checks
follow ESP-IDF's rules (gen_esp32part.py), and the app partition must hold the frozen image."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BOARD_DIR = REPO / "boards" / "esp32_meter"
CSV = BOARD_DIR / "partitions.csv"

FLASH = 0x400000  # 4 MiB, the ESP32-WROOM/WROVER-32 flash the table is for
TABLE_END = 0x8000 + 0x1000  # the partition table itself sits at 0x8000 (one sector)
TYPES = {"app": 0x00, "data": 0x01}
SUBTYPES = {"app": {"factory": 0x00}, "data": {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "fat": 0x81,
                                              "spiffs": 0x82, "littlefs": 0x83}}
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


def by_name(table, name):
    found = [p for p in table if p["name"] == name]
    assert len(found) == 1, "partition %r: %d entries" % (name, len(found))
    return found[0]


def test_partitions_are_aligned_do_not_overlap_and_fit_4_mib(table):
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
    assert end <= FLASH, "the table ends at 0x%x, past 4 MiB" % end
    assert (len(table) + 1) * ENTRY < MAX_TABLE  # the entries and the MD5 row


def test_the_layout_the_port_and_the_board_expect(table):
    nvs = by_name(table, "nvs")
    assert nvs["type"] == "data" and nvs["subtype"] == 0x02 and nvs["offset"] == 0x9000  # makeimg.py
    assert nvs["size"] >= 0x3000  # ESP-IDF's minimum for a read-write NVS
    assert by_name(table, "phy_init")["subtype"] == 0x01
    apps = [p for p in table if p["type"] == "app"]
    assert [p["name"] for p in apps] == ["factory"] and apps[0]["offset"] == 0x10000
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


def test_the_app_partition_holds_the_stock_app_and_the_frozen_firmware(table, tmp_path):
    mpy, count = frozen_mpy_bytes(tmp_path)
    assert count > 30 and mpy > 50000  # the whole firmware was compiled
    need = STOCK_APP_BUDGET + mpy * FROZEN_NUM // FROZEN_DEN + APP_HEADROOM
    have = by_name(table, "factory")["size"]
    assert need <= have, "app partition 0x%x < %d bytes (stock app %d + frozen %d x %d/%d + %d)" % (
        have, need, STOCK_APP_BUDGET, mpy, FROZEN_NUM, FROZEN_DEN, APP_HEADROOM)


def test_the_board_definition_builds_the_image_with_this_table():
    cmake = (BOARD_DIR / "mpconfigboard.cmake").read_text()
    assert '${MICROPY_BOARD_DIR}/partitions.csv' in cmake and "CONFIG_PARTITION_TABLE_CUSTOM=y" in cmake
    # the fragment naming the table comes after sdkconfig.base, which names the stock one
    defaults = cmake[cmake.index("set(SDKCONFIG_DEFAULTS"):]
    assert defaults.index("sdkconfig.base") < defaults.index("sdkconfig.meter_partitions")
    assert "${MICROPY_BOARD_DIR}/../manifest.py" in cmake and (REPO / "boards" / "manifest.py").is_file()
    assert (BOARD_DIR / "mpconfigboard.h").is_file()
