"""Signed firmware releases for updates over the air (docs/ota.md), on the headend's side.

A release is the app image the meter image's build made (build-esp32_meter-OTA/micropython.bin,
not firmware.bin: that one starts with the bootloader), and a manifest signed with the utility's
release key (tools/release_key.py, RSA-3072, PKCS#1 v1.5 with SHA-256):

    <home>/release_key.pem                 the private key (mode 0600; keep it offline)
    <home>/releases/<version>/image.bin    the image
    <home>/releases/<version>/manifest.json  the signed bytes, exactly
    <home>/releases/<version>/manifest.sig   the signature, hex

The meter checks the signature with the public key provisioned into its /secrets.json
("release_key"), then the board, the version (no downgrade unless the manifest names the version it
replaces), the size and the record version, streams the image and checks its SHA-256.
"""
import hashlib
import json
import struct
from pathlib import Path

import release_key

ROOT = Path(__file__).resolve().parent.parent
KEY_FILE = "release_key.pem"
MAX_MANIFEST = 600  # firmware/ota_manifest.py MAX_TEXT
CHUNK = 1024  # firmware/ota.py CHUNK: bytes of image per message to the meter
_DESC = 32


class ReleaseError(Exception):
    pass


def vcode(text):
    parts = text.split(".") if isinstance(text, str) else []
    if len(parts) != 3 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return -1
    return int(parts[0]) << 16 | int(parts[1]) << 8 | int(parts[2])


def image_version(image):
    """The version in an ESP-IDF app image's descriptor, or None when it is not such an image."""
    if len(image) < _DESC + 48 or image[0] != 0xE9 or struct.unpack_from("<I", image, _DESC)[0] != 0xABCD5432:
        return None
    v = image[_DESC + 16:_DESC + 48].split(b"\0", 1)[0]
    try:
        return v.decode()
    except UnicodeDecodeError:
        return None


def firmware_version():
    for line in (ROOT / "firmware" / "version.py").read_text().splitlines():
        if line.startswith("VERSION = "):
            return line.split('"')[1]
    raise ReleaseError("firmware/version.py has no VERSION line")


def record_version():
    for line in (ROOT / "firmware" / "record.py").read_text().splitlines():
        if line.startswith("VERSION = "):
            return int(line.split("=")[1].split("#")[0])
    raise ReleaseError("firmware/record.py has no VERSION line")


def manifest_bytes(image, version, boards, min_record, kid, downgrade_from=None):
    doc = {"v": 1, "version": version, "board": list(boards), "size": len(image),
           "sha256": hashlib.sha256(image).hexdigest(), "min_record": min_record, "kid": kid}
    if downgrade_from:
        doc["downgrade_from"] = downgrade_from
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    if len(text) > MAX_MANIFEST:
        raise ReleaseError("manifest is %d bytes, a meter keeps at most %d (fewer boards?)" % (len(text), MAX_MANIFEST))
    return text


def build(home, image_path, boards, min_record=None, downgrade_from=None, key_path=None):
    """Sign the image at `image_path` as a release: returns its folder. The version is the image's
    own (its app descriptor), so a manifest cannot claim another."""
    home = Path(home)
    image = Path(image_path).read_bytes()
    version = image_version(image)
    if version is None:
        raise ReleaseError("%s is not an ESP32 app image (no app descriptor): give the build's "
                           "micropython.bin, not firmware.bin" % image_path)
    if vcode(version) < 0:
        raise ReleaseError("the image's version %r is not MAJOR.MINOR.PATCH (firmware/version.py sets it)" % version)
    if downgrade_from is not None and vcode(downgrade_from) <= vcode(version):
        raise ReleaseError("--downgrade-from %s must be newer than the image's %s" % (downgrade_from, version))
    if not boards:
        raise ReleaseError("name at least one board the image is for")
    key_path = Path(key_path) if key_path else home / KEY_FILE
    if not key_path.is_file():
        raise ReleaseError("no release key at %s: `headend release-key new` makes one" % key_path)
    key = release_key.load(str(key_path))
    kid = release_key.key_id(release_key.modulus(key))
    text = manifest_bytes(image, version, boards, record_version() if min_record is None else min_record,
                          kid, downgrade_from)
    sig = release_key.sign(key, text)
    out = home / "releases" / (version + ("-from-" + downgrade_from if downgrade_from else ""))
    out.mkdir(parents=True, exist_ok=True)
    (out / "image.bin").write_bytes(image)
    (out / "manifest.json").write_bytes(text)
    (out / "manifest.sig").write_text(sig.hex() + "\n")
    return out


class Release:
    """A release folder, loaded: what the headend sends and serves."""

    def __init__(self, folder):
        folder = Path(folder)
        try:
            self.image = (folder / "image.bin").read_bytes()
            self.manifest = (folder / "manifest.json").read_bytes()
            self.sig = (folder / "manifest.sig").read_text().strip()
        except OSError as e:
            raise ReleaseError("release %s is incomplete: %s" % (folder, e.strerror or e))
        self.doc = json.loads(self.manifest)
        self.version = self.doc["version"]
        if hashlib.sha256(self.image).hexdigest() != self.doc["sha256"] or len(self.image) != self.doc["size"]:
            raise ReleaseError("release %s: image.bin does not match its manifest" % folder)

    def chunks(self, offset, n):
        """(offset, bytes) messages for the meter's request of n bytes at offset (bounded to the image)."""
        end = min(offset + n, len(self.image))
        out = []
        o = offset
        while o < end:
            k = min(CHUNK, end - o)
            out.append(struct.pack(">I", o) + self.image[o:o + k])
            o += k
        return out


def releases(home):
    d = Path(home) / "releases"
    return sorted(p.name for p in d.iterdir() if (p / "manifest.json").is_file()) if d.is_dir() else []
