"""Render the example images shipped in examples/ (run once; the PNGs are committed).

    python tools/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1] / "examples"


def font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"), size)


def receipt() -> Image.Image:
    """A cafe receipt whose total is 7.75."""
    rows = [("CORNER CAFE", "", 34), ("Latte", "3.50", 26), ("Croissant", "2.75", 26),
            ("Orange juice", "1.50", 26), ("TOTAL", "7.75", 30), ("Thank you!", "", 24)]
    img = Image.new("RGB", (480, 400), "white")
    draw = ImageDraw.Draw(img)
    y = 24
    for label, price, size in rows:
        f = font(size)
        draw.text((40, y), label, fill="black", font=f)
        if price:
            draw.text((440, y), price, fill="black", font=f, anchor="ra")
        y += size + (30 if label in ("CORNER CAFE", "Orange juice", "TOTAL") else 14)
    return img


if __name__ == "__main__":
    ROOT.mkdir(exist_ok=True)
    receipt().save(ROOT / "receipt.png")
    print("wrote", ROOT / "receipt.png")
