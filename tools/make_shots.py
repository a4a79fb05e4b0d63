"""Render the images of the shipped solved examples (examples/shots.jsonl); the PNGs are committed.

    python tools/make_shots.py

They are documents of kinds the built-in eval set does not hold (a concert poster, a book cover,
a shipping label), so an example never shows an item that is scored. The answers in
examples/shots.jsonl are stated next to each document below.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parents[1] / "examples"


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    import matplotlib

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf" / name), size)


def poster() -> Image.Image:
    """Harbour Jazz Night, Friday 21 June; doors open 7:30 PM; tickets $12."""
    img = Image.new("RGB", (420, 520), (24, 36, 72))
    d = ImageDraw.Draw(img)
    d.text((210, 40), "HARBOUR", fill=(250, 200, 80), font=font(46, bold=True), anchor="ma")
    d.text((210, 100), "JAZZ NIGHT", fill=(250, 200, 80), font=font(46, bold=True), anchor="ma")
    d.ellipse((150, 180, 270, 300), outline=(250, 200, 80), width=6)
    d.text((210, 330), "Friday 21 June", fill="white", font=font(28), anchor="ma")
    d.text((210, 380), "Doors open 7:30 PM", fill="white", font=font(28), anchor="ma")
    d.text((210, 440), "Tickets $12", fill="white", font=font(28, bold=True), anchor="ma")
    return img


def book() -> Image.Image:
    """The Quiet River, a novel by Marta Kowalski."""
    img = Image.new("RGB", (360, 520), (236, 228, 210))
    d = ImageDraw.Draw(img)
    d.rectangle((20, 20, 340, 500), outline=(90, 60, 40), width=4)
    d.text((180, 70), "THE QUIET", fill=(60, 40, 30), font=font(40, bold=True), anchor="ma")
    d.text((180, 125), "RIVER", fill=(60, 40, 30), font=font(40, bold=True), anchor="ma")
    d.text((180, 190), "a novel", fill=(60, 40, 30), font=font(24), anchor="ma")
    for i in range(5):
        y = 260 + i * 22
        d.arc((60, y - 20, 300, y + 20), 200, 340, fill=(70, 110, 160), width=4)
    d.text((180, 430), "MARTA KOWALSKI", fill=(60, 40, 30), font=font(28), anchor="ma")
    return img


def label() -> Image.Image:
    """A parcel label: FRAGILE, HANDLE WITH CARE, from Oslo to Lima, weight 3.2 kg."""
    img = Image.new("RGB", (480, 320), (250, 250, 245))
    d = ImageDraw.Draw(img)
    d.rectangle((10, 10, 470, 310), outline="black", width=3)
    d.text((240, 30), "FRAGILE", fill=(200, 20, 20), font=font(48, bold=True), anchor="ma")
    d.text((240, 95), "HANDLE WITH CARE", fill="black", font=font(28, bold=True), anchor="ma")
    d.text((40, 170), "From: Oslo", fill="black", font=font(26))
    d.text((40, 215), "To: Lima", fill="black", font=font(26))
    d.text((440, 215), "3.2 kg", fill="black", font=font(26), anchor="ra")
    return img


DOCUMENTS = {"poster.png": poster, "book.png": book, "label.png": label}

if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, make in DOCUMENTS.items():
        make().save(OUT / name, optimize=True)
        print("wrote", OUT / name)
