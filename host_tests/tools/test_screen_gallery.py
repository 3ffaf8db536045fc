"""docs/customer.md shows every screen of the customer display; its pictures are rendered from
the firmware (`make screens-doc`). This fails when the firmware draws a screen differently from
the picture, or the page names a picture the gallery does not make (or leaves one out)."""
import re
from pathlib import Path

import screen_gallery

USES_MICROPYTHON = True
REPO = Path(__file__).resolve().parents[2]


def test_docs_pictures_match_the_firmware(tmp_path):
    made = {p.name: (p.read_bytes(), text) for p, text in screen_gallery.build(tmp_path)}
    doc = (REPO / "docs" / "customer.md").read_text()
    named = set(re.findall(r"\(customer/([a-z0-9-]+\.png)\)", doc))
    assert named == set(made), (sorted(named ^ set(made)))
    for name, (png, text) in made.items():
        assert (REPO / "docs" / "customer" / name).read_bytes() == png, "%s differs: make screens-doc" % name
    # The pictures are what they say: read back from the pixels.
    assert "LOCKED" in made["message-03.png"][1][2] and "4:59" in made["message-03.png"][1][4]
    assert made["off-ready.png"][1][7] == "Press D/button"
