"""Images with a known ground truth, rendered with PIL (reused by examples and benchmarks).

Everything here is offline and deterministic: text is drawn with DejaVu Sans (bundled with
matplotlib, else the system copy), and the real photos come from scikit-image's data folder.

    from fixtures import render_receipt          # inside tests/
    receipt = render_receipt()
    receipt.image.save("receipt.png"); receipt.lines[-2]   # 'TOTAL 7.75'
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

DEFAULT_ITEMS: tuple[tuple[str, str], ...] = (("Latte", "4.50"), ("Croissant", "3.25"))


@dataclass(frozen=True)
class Rendered:
    """A rendered image and its text lines, top to bottom (words in a line joined by one space)."""

    image: Image.Image
    lines: tuple[str, ...]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.image.save(path)
        return path


@functools.cache
def font_path() -> str:
    """A TrueType font present on this machine (matplotlib's DejaVu Sans first)."""
    try:
        import matplotlib

        bundled = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    try:
        found = subprocess.run(["fc-match", "-f", "%{file}", "DejaVu Sans"], capture_output=True, text=True,
                               timeout=10, check=False).stdout.strip()
        if found and Path(found).is_file():
            return found
    except OSError:
        pass
    raise RuntimeError("No TrueType font found: pip install matplotlib (it bundles DejaVu Sans).")


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    path = font_path()
    if bold:
        candidate = Path(path).with_name("DejaVuSans-Bold.ttf")
        if candidate.is_file():
            path = str(candidate)
    return ImageFont.truetype(path, size)


def render_receipt(items: Sequence[tuple[str, str]] = DEFAULT_ITEMS, shop: str = "CORNER CAFE",
                   address: str = "12 Main Street", footer: str = "Thank you!", width: int = 640) -> Rendered:
    """A shop receipt: header, one line per item with its price right-aligned, TOTAL, footer.

    The default total is 7.75; ``lines`` is e.g. ``("CORNER CAFE", "12 Main Street", "Latte 4.50",
    "Croissant 3.25", "TOTAL 7.75", "Thank you!")``.
    """
    total = f"{sum(Decimal(price) for _, price in items):.2f}"
    body = font(26)
    head = font(34, bold=True)
    rows: list[tuple[str, str | None, ImageFont.FreeTypeFont, bool]] = [
        (shop, None, head, True), (address, None, body, True),
        *[(name, price, body, False) for name, price in items],
        ("TOTAL", total, font(28, bold=True), False), (footer, None, body, True),
    ]
    step, margin = 52, 40
    height = margin * 2 + step * len(rows) + 16
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    y = margin
    for i, (left, right, fnt, centred) in enumerate(rows):
        if left == "TOTAL":  # a rule above the total, as on real receipts
            draw.line([(margin, y - 10), (width - margin, y - 10)], fill=(0, 0, 0), width=2)
        if centred:
            w = draw.textlength(left, font=fnt)
            draw.text(((width - w) / 2, y), left, font=fnt, fill=(0, 0, 0))
        else:
            draw.text((margin, y), left, font=fnt, fill=(0, 0, 0))
            if right is not None:
                w = draw.textlength(right, font=fnt)
                draw.text((width - margin - w, y), right, font=fnt, fill=(0, 0, 0))
        y += step + (16 if i == 1 else 0)
    lines = tuple(f"{left} {right}" if right else left for left, right, _, _ in rows)
    return Rendered(image, lines)


def render_sign(lines: Sequence[str] = ("EXIT 24", "AIRPORT"), background: tuple[int, int, int] = (0, 110, 60),
                foreground: tuple[int, int, int] = (255, 255, 255), size: tuple[int, int] = (520, 260)) -> Rendered:
    """A road sign: light text, centred, on a coloured panel with a border (tests colour handling)."""
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    draw.rectangle([8, 8, size[0] - 9, size[1] - 9], outline=foreground, width=4)
    fnt = font(64, bold=True)
    step = (size[1] - 40) / len(lines)
    for i, text in enumerate(lines):
        w = draw.textlength(text, font=fnt)
        draw.text(((size[0] - w) / 2, 20 + i * step + (step - 64) / 2), text, font=fnt, fill=foreground)
    return Rendered(image, tuple(lines))


def solid(color: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A single-colour image (colour-order tests: pure red must reach a model as red)."""
    return Image.new("RGB", size, color)


def skimage_path(name: str) -> Path:
    """A file from scikit-image's bundled data, e.g. ``astronaut.png``, ``page.png``, ``coffee.png``."""
    import skimage.data

    path = Path(skimage.data.__file__).parent / name
    if not path.is_file():
        raise FileNotFoundError(f"scikit-image has no bundled data file {name}.")
    return path


#: Text on scikit-image's scanned ``page.png`` that OCR must find.
PAGE_TITLE = "Region-based segmentation"


if __name__ == "__main__":  # write the fixtures to a folder to look at them
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    print(render_receipt().save(out / "receipt.png"), render_sign().save(out / "sign.png"))
