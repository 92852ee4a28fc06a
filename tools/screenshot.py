"""The README's pictures, from a real server: the page of a timer with some
late resets (docs/img/page.png) and its badge (docs/img/badge.svg).

    .venv/bin/python tools/screenshot.py

Needs Debian's chromium. Look at the picture before you commit it."""

from __future__ import annotations

import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser import screenshot, seed  # noqa: E402
from support import service  # noqa: E402

IMAGES = ROOT / "docs" / "img"


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        token = seed(Path(tmp) / "t.db", "nightly-backup")
        with service({"TIMERCHECK_DB": f"{tmp}/t.db"}) as server:
            base = f"http://127.0.0.1:{server.port}/-/{token}"
            screenshot(f"{base}?label=nightly%20backup", IMAGES / "page.png")
            badge = f"{base}?format=svg&label=nightly%20backup"
            with urllib.request.urlopen(badge, timeout=10) as answer:
                (IMAGES / "badge.svg").write_bytes(answer.read())
    print(f"wrote {IMAGES / 'page.png'} and {IMAGES / 'badge.svg'}")


if __name__ == "__main__":
    main()
