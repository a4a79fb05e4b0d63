"""Render the documents of the built-in eval set into mmreact/data/evalset/ (the PNGs are committed).

    python tools/make_evalset.py

The questions and answers live in mmreact/data/evalset/items.jsonl; the numbers they rely on
are stated next to each document below, so a change here must be mirrored there.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parents[1] / "mmreact" / "data" / "evalset"


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    import matplotlib

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf" / name), size)


def priced_lines(d: ImageDraw.ImageDraw, rows: list[tuple[str, str]], left: int, right: int, y: int, size: int,
                 fill: object, step: int) -> int:
    """Label at ``left``, price right-aligned at ``right``, one row every ``step`` px; the y after them."""
    for label, price in rows:
        d.text((left, y), label, fill=fill, font=font(size))
        d.text((right, y), price, fill=fill, font=font(size), anchor="ra")
        y += step
    return y


def receipt() -> Image.Image:
    """Green Leaf Grocery: 3.20 + 2.45 + 1.99 + 8.50 = 16.14; tax 8% = 1.29; total 17.43."""
    img = Image.new("RGB", (460, 560), (252, 251, 246))
    d = ImageDraw.Draw(img)
    d.text((230, 28), "GREEN LEAF GROCERY", fill="black", font=font(28, bold=True), anchor="ma")
    d.text((230, 70), "12 Elm Street  -  14 Mar 2024", fill="black", font=font(18), anchor="ma")
    rows = [("Apples", "3.20"), ("Bread", "2.45"), ("Milk", "1.99"), ("Coffee beans", "8.50")]
    y = priced_lines(d, rows, 36, 424, 130, 24, "black", 44)
    d.line((36, y + 6, 424, y + 6), fill="black", width=2)
    y += 26
    for label, price, size, bold in [("SUBTOTAL", "16.14", 22, False), ("TAX 8%", "1.29", 22, False),
                                     ("TOTAL", "17.43", 28, True)]:
        d.text((36, y), label, fill="black", font=font(size, bold))
        d.text((424, y), price, fill="black", font=font(size, bold), anchor="ra")
        y += size + 20
    d.text((230, y + 24), "Thank you for shopping!", fill="black", font=font(20), anchor="ma")
    return img


def parking_sign() -> Image.Image:
    """No parking 8 AM - 6 PM, Monday to Friday (so Saturday noon is allowed)."""
    img = Image.new("RGB", (400, 520), (90, 110, 120))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((40, 30, 360, 490), radius=18, fill="white", outline=(200, 20, 20), width=10)
    d.text((200, 70), "NO", fill=(200, 20, 20), font=font(64, bold=True), anchor="ma")
    d.text((200, 150), "PARKING", fill=(200, 20, 20), font=font(52, bold=True), anchor="ma")
    d.text((200, 250), "8 AM - 6 PM", fill="black", font=font(40, bold=True), anchor="ma")
    d.text((200, 320), "MON - FRI", fill="black", font=font(40, bold=True), anchor="ma")
    d.text((200, 410), "TOW-AWAY ZONE", fill="black", font=font(26), anchor="ma")
    return img


def sales_table() -> Image.Image:
    """Bike sales 2023: Q1 120, Q2 150, Q3 90, Q4 200 (total 560; Q4 highest)."""
    img = Image.new("RGB", (440, 360), "white")
    d = ImageDraw.Draw(img)
    d.text((220, 22), "Bike sales 2023", fill="black", font=font(28, bold=True), anchor="ma")
    rows = [("Quarter", "Units sold"), ("Q1", "120"), ("Q2", "150"), ("Q3", "90"), ("Q4", "200")]
    x0, x1, x2, y, h = 40, 200, 400, 80, 52
    for i, (a, b) in enumerate(rows):
        if i == 0:
            d.rectangle((x0, y, x2, y + h), fill=(225, 232, 240))
        d.rectangle((x0, y, x2, y + h), outline="black", width=2)
        d.line((x1, y, x1, y + h), fill="black", width=2)
        f = font(24, bold=i == 0)
        d.text(((x0 + x1) // 2, y + h // 2), a, fill="black", font=f, anchor="mm")
        d.text(((x1 + x2) // 2, y + h // 2), b, fill="black", font=f, anchor="mm")
        y += h
    return img


def menu() -> Image.Image:
    """Sunrise Cafe: coffee 2.50, tea 2.00, muffin 3.25, bagel 2.75 (2 coffees + 1 muffin = 8.25)."""
    img = Image.new("RGB", (420, 380), (40, 44, 52))
    d = ImageDraw.Draw(img)
    d.text((210, 26), "SUNRISE CAFE", fill=(250, 210, 120), font=font(32, bold=True), anchor="ma")
    d.text((210, 72), "MENU", fill="white", font=font(22), anchor="ma")
    priced_lines(d, [("Coffee", "$2.50"), ("Tea", "$2.00"), ("Muffin", "$3.25"), ("Bagel", "$2.75")],
                 50, 370, 130, 26, "white", 52)
    return img


def shapes() -> Image.Image:
    """Left to right: a red circle, a green triangle, a blue square."""
    img = Image.new("RGB", (600, 240), "white")
    d = ImageDraw.Draw(img)
    d.ellipse((40, 50, 180, 190), fill=(220, 30, 30))
    d.polygon([(300, 45), (230, 190), (370, 190)], fill=(30, 160, 60))
    d.rectangle((430, 50, 570, 190), fill=(30, 60, 210))
    return img


DOCUMENTS = {"receipt_grocery.png": receipt, "sign_parking.png": parking_sign, "table_sales.png": sales_table,
             "menu_cafe.png": menu, "shapes.png": shapes}

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in DOCUMENTS.items():
        make().save(OUT / name, optimize=True)
        print("wrote", OUT / name)
