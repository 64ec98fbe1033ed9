"""The invisible font of the text layer: every character, no glyphs (Tesseract's and OCRmyPDF's approach).

A Type0 font with Identity-H encoding takes two-byte codes, and its ToUnicode
map says each code is the UTF-16 code unit of the same value: text written as
UTF-16BE is found by search and copied as written, in any script (Cyrillic,
CJK, Arabic...). Every code draws glyph 1 of a TrueType font whose glyphs are
empty, half an em wide; the text layer stretches each word to its box with
horizontal scaling. The font file is built here with fontTools rather than
shipped, so there is no binary blob to trust.
"""

from __future__ import annotations

import functools
import io
import zlib

import pikepdf
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen
from pikepdf import Dictionary, Name

FONT_NAME = "GlyphLessFont"
UNITS_PER_EM = 1000
ADVANCE = 500  # every glyph is half an em wide
# An ascent of one em and (almost) no descent: a viewer's highlight of a word
# drawn at the box height from the box's bottom edge covers exactly the box.
ASCENT = 1000
DESCENT = -1
ADVANCE_EM = ADVANCE / UNITS_PER_EM
# Every CID (a UTF-16 code unit) draws glyph 1: 65,536 big-endian 0x0001s.
_CID_TO_GID = zlib.compress(b"\x00\x01" * 65536, 9)
# The ToUnicode CMap: code <XXXX> is the UTF-16 code unit XXXX. A CMap is
# PostScript, not PDF syntax, and pikepdf has no builder for one.
_TO_UNICODE = b"""/CIDInit /ProcSet findresource begin
12 dict begin
begincmap
/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def
/CMapName /Adobe-Identity-UCS def
/CMapType 2 def
1 begincodespacerange
<0000> <FFFF>
endcodespacerange
1 beginbfrange
<0000> <FFFF> <0000>
endbfrange
endcmap
CMapName currentdict /CMap defineresource pop
end
end
"""


@functools.cache
def glyphless_truetype() -> bytes:
    """A TrueType font with two empty glyphs (.notdef and one to draw), half an em wide."""
    builder = FontBuilder(UNITS_PER_EM, isTTF=True)
    builder.setupGlyphOrder([".notdef", "blank"])
    builder.setupCharacterMap({0x20: "blank"})
    empty = TTGlyphPen(None).glyph()
    builder.setupGlyf({".notdef": empty, "blank": empty})
    builder.setupHorizontalMetrics({".notdef": (ADVANCE, 0), "blank": (ADVANCE, 0)})
    builder.setupHorizontalHeader(ascent=ASCENT, descent=0)
    builder.setupNameTable({"familyName": FONT_NAME, "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=ASCENT, sTypoDescender=0, usWinAscent=ASCENT, usWinDescent=0)
    builder.setupPost()
    # Fixed dates: the same font bytes on every run.
    builder.updateHead(created=0, modified=0)
    buffer = io.BytesIO()
    builder.save(buffer)
    return buffer.getvalue()


def add_glyphless_font(pdf: pikepdf.Pdf) -> pikepdf.Object:
    """Add the font's objects to `pdf` once; returns the Type0 font dictionary to reference."""
    descriptor = pdf.make_indirect(
        Dictionary(
            Type=Name.FontDescriptor,
            FontName=Name(f"/{FONT_NAME}"),
            Flags=5,  # fixed pitch, symbolic
            FontBBox=[0, DESCENT, ADVANCE, ASCENT],
            ItalicAngle=0,
            Ascent=ASCENT,
            Descent=DESCENT,
            CapHeight=ASCENT,
            StemV=80,
            FontFile2=pdf.make_stream(glyphless_truetype()),
        )
    )
    descendant = pdf.make_indirect(
        Dictionary(
            Type=Name.Font,
            Subtype=Name.CIDFontType2,
            BaseFont=Name(f"/{FONT_NAME}"),
            CIDSystemInfo=Dictionary(Registry="Adobe", Ordering="Identity", Supplement=0),
            FontDescriptor=descriptor,
            DW=ADVANCE,
            CIDToGIDMap=pdf.make_stream(_CID_TO_GID, Filter=Name.FlateDecode),
        )
    )
    return pdf.make_indirect(
        Dictionary(
            Type=Name.Font,
            Subtype=Name.Type0,
            BaseFont=Name(f"/{FONT_NAME}"),
            Encoding=Name("/Identity-H"),
            DescendantFonts=[descendant],
            ToUnicode=pdf.make_stream(_TO_UNICODE),
        )
    )


def encode(text: str) -> bytes:
    """The codes that show `text` in this font (UTF-16BE)."""
    return text.encode("utf-16be", "surrogatepass")


def advance_ems(text: str) -> float:
    """How wide `text` is in this font, in ems (before horizontal scaling)."""
    return len(encode(text)) // 2 * ADVANCE_EM
