"""Images the way their camera meant them: turned upright by their EXIF orientation.

A phone stores a photo held upright as the sensor's landscape pixels plus an EXIF
Orientation tag (6: turn 90 degrees clockwise to view). Every viewer applies it; a reader
that does not embeds, searches and shows the photo on its side. Every place the kernel reads
an image for what it shows (PRINT IMAGE, the map) or computes from it (BUILD, CONVERT,
SEARCH, EVALUATE) goes through ``upright``. Pillow only, imported lazily by the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

#: EXIF's Orientation tag
ORIENTATION = 0x0112
#: the orientations that swap width and height (a quarter turn, with or without a mirror)
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
#: formats whose Pillow plugin turns the image itself (its size already the viewed one)
_TURNED_BY_PILLOW = frozenset({"TIFF"})
#: where a JPEG's header (read whole when it is opened) can hold an orientation: EXIF, XMP
_JPEG_ORIENTING = ("exif", "xmp", "XML:com.adobe.xmp")


def orientation(image: Image.Image, *, header_only: bool = False) -> int:
    """The turn the image still needs, as its EXIF orientation, 1..8 (1, none, when it has
    no tag or a bad one, or when Pillow turns it while decoding). ``header_only``: never
    decode to find it (a PNG may keep its EXIF after the pixels, and Pillow's getexif decodes
    the whole image to look there; Pillow itself writes it before them)."""
    if image.format in _TURNED_BY_PILLOW:
        return 1
    if image.format == "JPEG" and not any(key in image.info for key in _JPEG_ORIENTING):
        return 1   # what getexif would find, without its cost (a tenth of a digit's decode)
    if header_only and image.format == "PNG" and "exif" not in image.info:
        return 1
    try:
        value = image.getexif().get(ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, TypeError):   # a broken EXIF block: as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the image as it is viewed, from the header alone (nothing is
    decoded)."""
    w, h = image.size
    return (h, w) if orientation(image, header_only=True) in _QUARTER_TURNS else (w, h)


def upright(image: Image.Image) -> Image.Image:
    """The image turned (and mirrored) as its EXIF orientation says; the image itself when
    it is upright already (no copy). Works after ``draft``: the tag survives the JPEG
    decoder's scaling."""
    turn = orientation(image)
    if turn == 1:
        return image
    from PIL import Image as PILImage

    method = {2: PILImage.Transpose.FLIP_LEFT_RIGHT, 3: PILImage.Transpose.ROTATE_180,
              4: PILImage.Transpose.FLIP_TOP_BOTTOM, 5: PILImage.Transpose.TRANSPOSE,
              6: PILImage.Transpose.ROTATE_270, 7: PILImage.Transpose.TRANSVERSE,
              8: PILImage.Transpose.ROTATE_90}[turn]
    return image.transpose(method)
