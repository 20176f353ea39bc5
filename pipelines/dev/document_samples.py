"""``python -m pipelines.dev.document_samples``: the sample business documents the
``document_processing`` template runs on, with the truth of every field.

Each document is first written as plain lines (the fields in one of three layouts per type, so
extraction cannot rely on a single label), then rendered the way documents arrive: text PDFs
(reportlab), scans (the lines drawn onto a grey image with Pillow, saved as PNG or wrapped in a
PDF with no text layer), DOCX (python-docx), HTML and plain text. ``ground_truth.json`` holds
every field of every readable document and the dead-letter rule expected for the unreadable
ones (an encrypted PDF, a PDF with no text, an image of noise), so accuracy is measured against
what was generated, not against what the extractor happens to say.

Everything is derived from fixed seeds and fixed timestamps (reportlab's ``invariant`` mode,
DOCX zip entries re-stamped), so a re-run writes the same documents, byte for byte, except
the encrypted PDF, whose file id and key pypdf draws at random.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[2] / "templates" / "sample_data" / "documents"
FIXED_ZIP_TIME = (2026, 1, 1, 0, 0, 0)
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]

VENDORS = [
    ("Acme Tools GmbH", "billing@acme-tools.de", "+49 30 1234567", "DE89370400440532013000"),
    ("Northwind Traders Ltd", "accounts@northwind.co.uk", "+44 20 7946 0958", "GB82WEST12345698765432"),
    ("Blue Harbor Supplies Inc", "ar@blueharbor.com", "+1 415 555 0132", None),
    ("Fjord Paper AS", "faktura@fjordpaper.no", "+47 22 12 34 56", "NO9386011117947"),
]
CUSTOMERS = ["Globex Retail Ltd", "Initech Services LLC", "Umbrella Foods GmbH"]
ITEMS = [
    ("Steel bolts M8", 0.35), ("Copy paper A4 box", 24.90), ("Safety gloves", 7.50),
    ("LED panel 60x60", 48.00), ("Cable ties 200", 3.20), ("Consulting hour", 95.00),
    ("Label printer", 189.00), ("Toner cartridge", 62.40),
]
MERCHANTS = ["Corner Cafe", "City Hardware Store", "Green Grocer Market"]
LAWS = ["England and Wales", "the State of New York", "Germany"]
CARDS = ["4111 1111 1111 1111", "5555 5555 5555 4444", "4012 8888 8888 1881"]


@dataclass
class Sample:
    """One document: its file name, type, lines and field truth (``None`` when unreadable)."""

    name: str
    doc_type: str | None
    lines: list[str]
    truth: dict[str, Any] | None
    expect_rule: str | None = None
    pii: list[str] = field(default_factory=list)


def _iso(day: tuple[int, int, int]) -> str:
    return f"{day[0]:04d}-{day[1]:02d}-{day[2]:02d}"


def _date_text(day: tuple[int, int, int], layout: int) -> str:
    y, m, d = day
    if layout == 0:
        return _iso(day)
    if layout == 1:
        return f"{d:02d}/{m:02d}/{y}"
    return f"{d} {MONTHS[m - 1]} {y}"


def _money(value: float, layout: int, currency: str) -> str:
    text = f"{value:,.2f}"
    if layout == 1:
        return f"{currency} {text}"
    if layout == 2 and currency == "USD":
        return f"${text}"
    return text


def invoice(i: int, rng: random.Random, n_items: int | None = None) -> Sample:
    layout = i % 3
    vendor, email, phone, iban = VENDORS[i % len(VENDORS)]
    customer = CUSTOMERS[i % len(CUSTOMERS)]
    currency = ["EUR", "GBP", "USD", "EUR"][i % 4] if layout != 2 else "USD"
    issued = (2026, 1 + i % 12, 3 + (i * 7) % 20)
    due = (issued[0], issued[1] + 1 if issued[1] < 12 else 1, issued[2])
    if issued[1] == 12:
        due = (issued[0] + 1, 1, issued[2])
    items = []
    picks = rng.sample(ITEMS, 1 + i % 3) if n_items is None else [rng.choice(ITEMS) for _ in range(n_items)]
    for name, price in picks:
        qty = rng.randint(1, 12)
        items.append({"description": name, "quantity": qty, "unit_price": price,
                      "amount": round(qty * price, 2)})
    net = round(sum(it["amount"] for it in items), 2)
    rate = [20, 19, 8][layout]
    tax = round(net * rate / 100, 2)
    total = round(net + tax, 2)
    number = [f"INV-2026-{1000 + i}", f"{52000 + i * 13}", f"A-{7700 + i}"][layout]
    labels = [
        ("INVOICE", f"From: {vendor}", "Invoice Number", "Invoice Date", "Due Date",
         "Subtotal", f"VAT ({rate}%)", "Total"),
        (f"{vendor}", "TAX INVOICE", "Invoice #", "Date", "Payment due",
         "Net amount", "Tax", "Amount due"),
        ("INVOICE", f"Vendor: {vendor}", "No.", "Issued", "Due",
         "Net", f"Sales tax {rate}%", "Total due"),
    ][layout]
    lines = [labels[0], labels[1], f"Email: {email}  Phone: {phone}",
             f"Bill to: {customer}",
             f"{labels[2]}: {number}",
             f"{labels[3]}: {_date_text(issued, layout)}",
             f"{labels[4]}: {_date_text(due, layout)}"]
    if layout == 0:
        lines.append(f"Currency: {currency}")
    lines.append("Items:")
    for it in items:
        lines.append(
            f"{it['quantity']} x {it['description']} @ {it['unit_price']:.2f} = {it['amount']:,.2f}"
        )
    lines += [f"{labels[5]}: {_money(net, layout, currency)}",
              f"{labels[6]}: {_money(tax, layout, currency)}",
              f"{labels[7]}: {_money(total, layout, currency)}"]
    pii = [email, phone]
    if iban:
        lines.append(f"Pay to IBAN: {iban}")
        pii.append(iban)
    truth = {"vendor": vendor, "invoice_number": number, "invoice_date": _iso(issued),
             "due_date": _iso(due), "currency": currency, "net_amount": net,
             "tax_amount": tax, "total_amount": total, "line_items": items}
    return Sample("", "invoice", lines, truth, pii=pii)


def receipt(i: int, rng: random.Random) -> Sample:
    merchant = MERCHANTS[i % len(MERCHANTS)]
    day = (2026, 2 + i, 10 + i)
    amounts = [round(rng.uniform(2, 40), 2) for _ in range(2 + i)]
    total = round(sum(amounts), 2)
    card = CARDS[i % len(CARDS)]
    lines = [merchant, "RECEIPT", f"Date: {_date_text(day, i % 3)}"]
    lines += [f"Item {n + 1}: {a:.2f}" for n, a in enumerate(amounts)]
    lines += [f"TOTAL: {total:.2f}", f"Paid by card {card}", "Thank you for your visit"]
    truth = {"merchant": merchant, "date": _iso(day), "total_amount": total}
    return Sample("", "receipt", lines, truth, pii=[card])


def contract(i: int, rng: random.Random) -> Sample:
    a, b = VENDORS[i % len(VENDORS)][0], CUSTOMERS[i % len(CUSTOMERS)]
    start = (2026, 1 + 2 * i, 1)
    end = (2027 + i, 1 + 2 * i, 1)
    law = LAWS[i % len(LAWS)]
    ssn = f"{123 + i:03d}-45-{6789 - i:04d}"
    lines = [
        "SERVICES AGREEMENT",
        f"This Agreement is made between {a} and {b}.",
        f"Effective Date: {_date_text(start, i % 3)}",
        f"Termination Date: {_date_text(end, i % 3)}",
        "The supplier shall provide the services described in Schedule 1.",
        f"Contact for notices: legal{i}@example.com, SSN of signatory {ssn}",
        f"This Agreement is governed by the laws of {law}.",
    ]
    truth = {"parties": [a, b], "effective_date": _iso(start), "termination_date": _iso(end),
             "governing_law": law}
    return Sample("", "contract", lines, truth, pii=[f"legal{i}@example.com", ssn])


# --------------------------------------------------------------------------- rendering


def text_pdf(lines: list[str]) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, invariant=1)
    y = A4[1] - 60
    for line in lines:
        if y < 60:
            c.showPage()
            y = A4[1] - 60
        c.setFont("Helvetica", 11)
        c.drawString(50, y, line)
        y -= 18
    c.showPage()
    c.save()
    return buf.getvalue()


def scan(lines: list[str], seed: int) -> Any:
    """The lines drawn on a grey page with speckle noise: a greyscale ``PIL.Image``."""
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    font = ImageFont.load_default(size=26)
    img = Image.new("L", (1240, 80 + 42 * len(lines)), 235)
    draw = ImageDraw.Draw(img)
    for n, line in enumerate(lines):
        draw.text((60, 40 + 42 * n), line, fill=25, font=font)
    for _ in range(1500):
        draw.point((rng.randrange(img.width), rng.randrange(img.height)), fill=rng.randint(150, 210))
    return img


def worn_jpeg(lines: list[str], seed: int) -> bytes:
    """A worse scan: smaller type, a 1.2 degree skew, blur and heavy JPEG compression, so the
    accuracy report has a document OCR can get wrong."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = random.Random(seed)
    font = ImageFont.load_default(size=17)
    img = Image.new("L", (900, 60 + 28 * len(lines)), 225)
    draw = ImageDraw.Draw(img)
    for n, line in enumerate(lines):
        draw.text((40, 30 + 28 * n), line, fill=50, font=font)
    for _ in range(4000):
        draw.point((rng.randrange(img.width), rng.randrange(img.height)), fill=rng.randint(120, 200))
    img = img.rotate(1.2, resample=Image.BICUBIC, fillcolor=225, expand=True)
    img = img.filter(ImageFilter.GaussianBlur(0.7))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=35)
    return buf.getvalue()


def png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def scanned_pdf(img: Any) -> bytes:
    """A PDF whose only content is the page image (no text layer), as a scanner writes it."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    w, h = img.width * 72 / 150, img.height * 72 / 150  # 150 dpi
    c = canvas.Canvas(buf, pagesize=(w, h), invariant=1)
    c.drawImage(ImageReader(img.convert("RGB")), 0, 0, width=w, height=h)
    c.showPage()
    c.save()
    return buf.getvalue()


def docx(lines: list[str]) -> bytes:
    import datetime as dt

    from docx import Document

    document = Document()
    stamp = dt.datetime(2026, 1, 1)
    document.core_properties.created = stamp
    document.core_properties.modified = stamp
    for line in lines:
        document.add_paragraph(line)
    buf = io.BytesIO()
    document.save(buf)
    return _restamp_zip(buf.getvalue())


def _restamp_zip(data: bytes) -> bytes:
    """The same zip with fixed entry times, so the bytes do not depend on when it was made."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(zipfile.ZipInfo(info.filename, FIXED_ZIP_TIME), src.read(info.filename),
                         zipfile.ZIP_DEFLATED)
    return out.getvalue()


def html(lines: list[str], title: str) -> bytes:
    from html import escape

    body = "\n".join(f"<p>{escape(line)}</p>" for line in lines)
    return (f"<!doctype html>\n<html><head><title>{escape(title)}</title>"
            f"<style>p{{margin:2px}}</style></head>\n<body>\n{body}\n</body></html>\n").encode()


def encrypted_pdf(lines: list[str]) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf(lines))))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def noise_png(seed: int) -> bytes:
    from PIL import Image

    rng = random.Random(seed)
    img = Image.new("L", (400, 300))
    img.putdata([rng.choice((40, 120, 200, 250)) for _ in range(400 * 300)])
    return png(img)


# --------------------------------------------------------------------------- the set

INVOICE_FORMATS = [
    "pdf", "pdf", "pdf", "scan.png", "pdf", "docx", "scan.pdf", "html", "txt", "pdf", "worn.jpg",
    "long.pdf",
]
LONG_INVOICE_ITEMS = 40  # two pages
RECEIPT_FORMATS = ["pdf", "scan.png", "txt"]
CONTRACT_FORMATS = ["pdf", "docx", "html"]


def render(sample: Sample, fmt: str, seed: int) -> bytes:
    if fmt == "pdf":
        return text_pdf(sample.lines)
    if fmt == "scan.png":
        return png(scan(sample.lines, seed))
    if fmt == "scan.pdf":
        return scanned_pdf(scan(sample.lines, seed))
    if fmt == "worn.jpg":
        return worn_jpeg(sample.lines, seed)
    if fmt == "long.pdf":
        return text_pdf(sample.lines)
    if fmt == "docx":
        return docx(sample.lines)
    if fmt == "html":
        return html(sample.lines, sample.lines[0])
    if fmt == "txt":
        return ("\n".join(sample.lines) + "\n").encode()
    raise ValueError(f"unknown sample format {fmt}")


def samples() -> list[tuple[Sample, str]]:
    """Every sample document with the format it is rendered in."""
    rng = random.Random(15)
    out: list[tuple[Sample, str]] = []
    for kind, make, formats in (("invoice", invoice, INVOICE_FORMATS),
                                ("receipt", receipt, RECEIPT_FORMATS),
                                ("contract", contract, CONTRACT_FORMATS)):
        for i, fmt in enumerate(formats):
            sample = invoice(i, rng, LONG_INVOICE_ITEMS) if fmt == "long.pdf" else make(i, rng)
            ext = fmt.split(".")[-1]
            suffix = {"scan": "_scan", "worn": "_worn_scan", "long": "_two_pages"}.get(fmt.split(".")[0], "")
            sample.name = f"{kind}_{i + 1:02d}{suffix}.{ext}"
            out.append((sample, fmt))
    return out


def generate(out: Path = OUT) -> dict[str, Any]:
    """Write every sample document and ``ground_truth.json`` into ``out``; return the truth."""
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, Any] = {}
    for n, (sample, fmt) in enumerate(samples()):
        (out / sample.name).write_bytes(render(sample, fmt, seed=n))
        truth[sample.name] = {"document_type": sample.doc_type, "fields": sample.truth,
                              "pii": sample.pii}
    unreadable = out / "unreadable"
    unreadable.mkdir(exist_ok=True)
    secret = invoice(99, random.Random(99))
    (unreadable / "encrypted.pdf").write_bytes(encrypted_pdf(secret.lines))
    (unreadable / "blank.pdf").write_bytes(text_pdf([]))
    (unreadable / "noise.png").write_bytes(noise_png(7))
    for name, rule in (("encrypted.pdf", "encrypted"), ("blank.pdf", "no_text"),
                       ("noise.png", "ocr_confidence")):
        truth[f"unreadable/{name}"] = {"document_type": None, "fields": None, "expect_rule": rule}
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="directory to write into")
    args = parser.parse_args(argv)
    truth = generate(args.out)
    print(f"{len(truth)} documents in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
