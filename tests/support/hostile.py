"""Broken, hostile and hand-built input files, made byte by byte in the test.

Pillow and pdfium write only well-formed files, so the files that lie (a header
claiming 35,000 x 35,000 pixels over a few bytes of data, a TIFF whose IFDs point
in a circle, a PDF with no pages) are assembled here from their specifications.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

A4_POINTS = (595.276, 841.89)
POINTS_PER_METRE = 72 / 0.0254


# --- PDF ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PdfPage:
    """A page for `pdf_document`: its MediaBox size in points and its text lines."""

    width_pt: float = A4_POINTS[0]
    height_pt: float = A4_POINTS[1]
    lines: Sequence[str] = ()
    font_pt: float = 24
    extra: str = ""  # more entries for the page dictionary, e.g. "/Rotate 90"


def _pdf_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_document(pages: Sequence[PdfPage], *, kids: str | None = None) -> bytes:
    """A valid PDF 1.4 with Helvetica text, byte offsets and xref computed.

    `kids` replaces the page tree's /Kids array (e.g. "[]" or "[99 0 R]") to make
    a page tree that lies about its pages.
    """
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    page_refs = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    tree_kids = kids if kids is not None else f"[{page_refs}]"
    objects.append(f"<< /Type /Pages /Kids {tree_kids} /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, page in enumerate(pages):
        ops = []
        y = page.height_pt - 2 * page.font_pt
        for line in page.lines:
            ops.append(f"BT /F1 {page.font_pt:g} Tf 36 {y:.2f} Td ({_pdf_text(line)}) Tj ET")
            y -= 1.6 * page.font_pt
        content = "\n".join(ops).encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {page.width_pt:g} {page.height_pt:g}] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R {page.extra} >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref_at,
    )
    return bytes(out)


def pdf_header_then_eof() -> bytes:
    """A PDF header immediately followed by the end-of-file marker: no body at all."""
    return b"%PDF-1.7\n%%EOF\n"


def encrypted_pdf(data: bytes, *, user_password: str, owner_password: str = "owner") -> bytes:
    """`data` re-saved with the standard security handler (RC4-128, no extra packages).

    An empty `user_password` makes a PDF that opens without one (owner password only).
    """
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


# --- PNG ---------------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming_size(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (8-bit gray) over one row of data.

    Decoding it would fail as truncated, so an error about its size proves the
    size was refused from the header, before decoding.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    one_row = zlib.compress(b"\x00" + b"\xff" * min(width, 4096))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", one_row)
        + _png_chunk(b"IEND", b"")
    )


def png_with_bad_header_crc(image: Image.Image) -> bytes:
    """A PNG whose IHDR chunk fails its CRC check."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[8 + 8 + 13] ^= 0xFF  # first CRC byte after the 13-byte IHDR body
    return bytes(data)


def png_with_damaged_pixels(image: Image.Image) -> bytes:
    """A PNG whose compressed pixel data (in IDAT, CRC kept valid) is overwritten."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    body = bytearray(data[at + 4 : at + 4 + length])
    body[2 : length // 2] = b"\xff" * (length // 2 - 2)
    return bytes(data[: at - 4]) + _png_chunk(b"IDAT", bytes(body)) + bytes(data[at + 8 + length :])


# --- JPEG, GIF, BMP headers --------------------------------------------------------


def jpeg_claiming_size(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is patched to claim width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "white").save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    at = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def gif_claiming_size(width: int, height: int) -> bytes:
    """A small real GIF whose logical screen and first frame claim width x height."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 255).save(buffer, format="GIF")
    data = bytearray(buffer.getvalue())
    struct.pack_into("<HH", data, 6, width, height)
    descriptor = data.index(b"\x2c")  # the image descriptor: ',' left top width height
    struct.pack_into("<HH", data, descriptor + 5, width, height)
    return bytes(data)


def bmp_claiming_size(width: int, height: int) -> bytes:
    """A small real 24-bit BMP whose info header claims width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(buffer, format="BMP")
    data = bytearray(buffer.getvalue())
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


# --- TIFF --------------------------------------------------------------------------


@dataclass(frozen=True)
class TiffPage:
    """An 8-bit grayscale TIFF page; `claimed` overrides the size written in its IFD."""

    width: int
    height: int
    fill: int = 255
    claimed: tuple[int, int] | None = None


def tiff_document(pages: Sequence[TiffPage], *, loop_back: bool = False) -> bytes:
    """A little-endian, uncompressed grayscale TIFF with one IFD per page.

    `loop_back` makes the last IFD point back at the first, a cycle that a naive
    reader follows forever.
    """
    out = bytearray(b"II*\x00\x00\x00\x00\x00")
    ifd_offsets: list[int] = []
    next_pointer_at = 4
    for page in pages:
        pixels = bytes([page.fill]) * (page.width * page.height)
        strip_at = len(out)
        out += pixels
        if len(out) % 2:
            out += b"\x00"
        ifd_at = len(out)
        ifd_offsets.append(ifd_at)
        struct.pack_into("<I", out, next_pointer_at, ifd_at)
        width, height = page.claimed or (page.width, page.height)
        entries = [
            (256, 4, width),  # ImageWidth, LONG
            (257, 4, height),  # ImageLength
            (258, 3, 8),  # BitsPerSample, SHORT
            (259, 3, 1),  # Compression: none
            (262, 3, 1),  # PhotometricInterpretation: black is zero
            (273, 4, strip_at),  # StripOffsets
            (277, 3, 1),  # SamplesPerPixel
            (278, 4, height),  # RowsPerStrip
            (279, 4, len(pixels)),  # StripByteCounts
        ]
        out += struct.pack("<H", len(entries))
        for tag, kind, value in entries:
            packed = (
                struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
            )
            out += struct.pack("<HHI", tag, kind, 1) + packed
        next_pointer_at = len(out)
        out += b"\x00\x00\x00\x00"
    if loop_back and ifd_offsets:
        struct.pack_into("<I", out, next_pointer_at, ifd_offsets[0])
    return bytes(out)


# --- generic mutations -------------------------------------------------------------


def truncated(data: bytes, keep: float) -> bytes:
    """The first `keep` fraction of the bytes, as an interrupted copy leaves them."""
    return data[: int(len(data) * keep)]


def png_bomb(width: int, height: int) -> bytes:
    """A real decompression bomb: a 1-bit PNG of width x height white pixels.

    Every byte of it is valid (decoding would succeed and need width x height
    bytes of memory); deflate squeezes the uniform rows to about 1/1000 of their
    size, so a 400-megapixel page is a file of tens of kilobytes.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\xff" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )
