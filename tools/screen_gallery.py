"""Render every screen of the customer display to docs/customer/NAME.png (docs/customer.md).

    python tools/screen_gallery.py [OUT]    (default docs/customer; `make screens-doc`)

Runs tools/screen_gallery_mp.py on the MicroPython unix port (the firmware and the emulated
display), then turns its frames into PNGs with tools/screens.py, named by screen.
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mprun  # noqa: E402
import screens  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def build(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pm-gallery-") as tmp:
        work = Path(tmp)
        (work / "frames").mkdir()
        env = dict(os.environ, MICROPYPATH=mprun.micropypath())
        p = subprocess.run([mprun.mpy_path(), "-X", "heapsize=" + mprun.APP_HEAP, str(ROOT / "tools" / "screen_gallery_mp.py"),
                            str(work), str(work / "flash.img")], capture_output=True, text=True, cwd=ROOT, env=env,
                           timeout=600)
        if p.returncode != 0:
            raise SystemExit("screen_gallery: the MicroPython side failed:\n" + p.stdout + p.stderr)
        pngs = screens.render(work, scale=2)
        names = {}
        for line in (work / "screens.jsonl").read_text().splitlines():
            rec = json.loads(line)
            names[rec["n"]] = rec
        written = []
        for png in pngs:
            rec = names[int(png.stem.split("-")[1])]
            dest = out / (rec["why"] + ".png")
            dest.write_bytes(png.read_bytes())
            written.append((dest, rec["text"]))
    return written


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    for dest, text in build(argv[0] if argv else ROOT / "docs" / "customer"):
        print("%s  %s" % (dest, " | ".join(t for t in text if t)))


if __name__ == "__main__":
    main()
