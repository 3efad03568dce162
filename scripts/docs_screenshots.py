"""The report screenshots of the documentation's Getting started page (docs/images/demo-*.png).

    python scripts/docs_screenshots.py demo/derivatives docs/images

Opens ``group.html`` and ``sub-01.html`` of a finished output folder in headless Chromium (``chromium`` on PATH, or
``CHROMIUM=...``), once per shot, with every report section but the one shown hidden by a style sheet added to a
temporary copy (the reports themselves are not changed), trims the empty page below the content and stores a
128-colour PNG (each well under 300 KB). Needs Pillow (installed with matplotlib).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# (file name, report, the section shown or None for the top of the page, window height)
SHOTS = [
    ("demo-group.png", "group.html", None, 1600),
    ("demo-group-curves.png", "group.html", "curves", 1400),
    ("demo-group-traces.png", "group.html", "traces", 1600),
    ("demo-sub-01.png", "sub-01.html", None, 1600),
    ("demo-sub-01-spectra.png", "sub-01.html", "spectra", 1400),
]


def shoot(chromium: str, html: Path, section: str | None, height: int, png: Path, scratch: Path) -> None:
    from PIL import Image, ImageChops

    text = html.read_text(encoding="utf-8")
    if section:
        text = text.replace("</head>", f"<style>section:not(#{section}){{display:none !important}}</style></head>", 1)
    page = scratch / html.name
    page.write_text(text, encoding="utf-8")
    raw = scratch / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={raw}", f"--window-size=1280,{height}", page.as_uri()],
                   check=True, capture_output=True, timeout=180)
    image = Image.open(raw).convert("RGB")
    background = Image.new("RGB", image.size, image.getpixel((image.width - 1, image.height - 1)))
    box = ImageChops.difference(image, background).getbbox()
    if box:
        image = image.crop((0, 0, image.width, min(image.height, box[3] + 24)))
    image.quantize(colors=128, dither=Image.Dither.NONE).save(png, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path, help="a finished output folder (group.html, sub-01.html)")
    parser.add_argument("images", type=Path, help="where the PNG files go (docs/images)")
    args = parser.parse_args(argv)
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("chromium not found (set CHROMIUM)", file=sys.stderr)
        return 1
    args.images.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for name, report, section, height in SHOTS:
            shoot(chromium, args.output_dir / report, section, height, args.images / name, Path(scratch))
            print(f"{args.images / name}: {(args.images / name).stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
