#!/usr/bin/env python3
"""Fetch the pinned umqtt.simple sdist from PyPI for host runs of the firmware.

The sdist (micropython-umqtt.simple 1.3.4) is not installable with pip, so we
download it ourselves, check it against a pinned SHA-256 and copy out the one
file we need:  .deps/mplib/umqtt/simple.py

Nothing else is downloaded. A provenance record is written next to it so tests
can see what was verified. Stdlib only; runs under any Python 3.8+.
"""

import argparse
import hashlib
import io
import json
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PACKAGE = "micropython-umqtt.simple"
VERSION = "1.3.4"
SDIST_SHA256 = "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f"
MEMBER = "umqtt/simple.py"

REPO = Path(__file__).resolve().parent.parent
DEST = REPO / ".deps" / "mplib" / "umqtt" / "simple.py"
PROVENANCE = REPO / ".deps" / "umqtt-simple.provenance.json"

META_URLS = (
    "https://pypi.org/pypi/%s/%s/json" % (PACKAGE, VERSION),
    # Fallback for mirrors that only serve the project-level document.
    "https://pypi.org/pypi/%s/json" % PACKAGE,
)


class FetchError(RuntimeError):
    """Download, metadata or archive problem."""


class ChecksumError(FetchError):
    """The downloaded bytes do not match the pinned digest."""


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def verify_sha256(data, expected=SDIST_SHA256, what="sdist"):
    """Return the digest of `data`; raise ChecksumError unless it equals `expected`."""
    actual = sha256_hex(data)
    if actual != expected.lower():
        raise ChecksumError(
            "refusing %s: sha256 mismatch (expected %s, got %s)" % (what, expected, actual)
        )
    return actual


def sdist_url(meta, version=VERSION):
    """Pick the sdist URL for `version` out of a PyPI JSON document."""
    files = meta.get("urls") or []
    if (meta.get("info") or {}).get("version") != version:
        files = (meta.get("releases") or {}).get(version) or []
    for f in files:
        if f.get("packagetype") == "sdist" and f.get("filename", "").endswith(".tar.gz"):
            return f["url"]
    raise FetchError("no sdist for %s %s in PyPI metadata" % (PACKAGE, version))


def extract_member(tar_bytes, member=MEMBER):
    """Return the bytes of the single regular file ending in /<member> in a .tar.gz."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:gz") as tar:
        hits = [m for m in tar.getmembers() if m.isfile() and m.name.endswith("/" + member)]
        if len(hits) != 1:
            raise FetchError("expected exactly one %s in the sdist, found %d" % (member, len(hits)))
        return tar.extractfile(hits[0]).read()


def http_get(url, timeout=30, attempts=3):
    req = urllib.request.Request(url, headers={"User-Agent": "meter-fw-fetch-umqtt/1"})
    for i in range(attempts):
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            if e.code < 500 or i == attempts - 1:
                raise FetchError("GET %s failed: HTTP %d" % (url, e.code)) from e
        except (urllib.error.URLError, OSError) as e:
            if i == attempts - 1:
                raise FetchError("GET %s failed: %s" % (url, e)) from e
        time.sleep(1 + i)
    raise AssertionError("unreachable")


def find_sdist_url():
    errors = []
    for url in META_URLS:
        try:
            return sdist_url(json.loads(http_get(url)))
        except (FetchError, ValueError) as e:
            errors.append(str(e))
    raise FetchError("could not find the sdist URL: " + "; ".join(errors))


def up_to_date(dest=DEST, provenance=PROVENANCE):
    try:
        rec = json.loads(provenance.read_text())
        return (
            rec.get("sdist_sha256") == SDIST_SHA256
            and rec.get("simple_py_sha256") == sha256_hex(dest.read_bytes())
        )
    except (OSError, ValueError):
        return False


def write_atomic(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def fetch(dest=DEST, provenance=PROVENANCE, force=False):
    if not force and up_to_date(dest, provenance):
        print("umqtt.simple %s: up to date (%s)" % (VERSION, dest.relative_to(REPO)))
        return
    url = find_sdist_url()
    blob = http_get(url)
    verify_sha256(blob)
    source = extract_member(blob)
    write_atomic(dest, source)
    record = {
        "package": PACKAGE,
        "version": VERSION,
        "url": url,
        "sdist_sha256": SDIST_SHA256,
        "simple_py_sha256": sha256_hex(source),
    }
    write_atomic(provenance, (json.dumps(record, indent=2) + "\n").encode())
    print("umqtt.simple %s: sdist sha256 verified, wrote %s" % (VERSION, dest))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="download even if up to date")
    args = ap.parse_args(argv)
    try:
        fetch(force=args.force)
    except FetchError as e:
        print("fetch_umqtt: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
