"""Check COCO / LVIS records before pycocotools or lvis sees them.

pycocotools is C code that trusts its input: a polygon vertex at 1e8 makes it allocate
gigabytes and crash, an RLE whose ``size`` disagrees with its counts reads past its
buffer, a 4-number "polygon" is silently taken for a box, and a missing key is a
``KeyError`` in the middle of an epoch. So every record that reaches the index has been
checked here first: numbers are finite and of the right type, polygons have an even
number (>= 6) of coordinates within a sane distance of the image, RLE sizes match the
image record and the counts cover exactly ``height * width`` pixels.

Each check returns ``None`` for a usable record or a short reason ("with a malformed
polygon") that :func:`imx500_picosam.learn.data.load_instances` counts in its skipped summary.
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath
from typing import Any, Dict, Optional, Tuple

from ..images import MAX_IMAGE_PIXELS

# Polygon vertices may lie this many image sizes outside the image (annotators click
# slightly past the border); further out is not an annotation of this image.
COORDINATE_MARGIN = 1.0
# pycocotools walks every polygon edge at 5x resolution and allocates a point per step:
# the summed edge lengths of one annotation may be at most this many times (width + height).
MAX_PERIMETER_FACTOR = 100
# Characters of pycocotools' compressed RLE alphabet (6 bits each, offset 48).
_RLE_FIRST, _RLE_LAST = 48, 48 + 63
_RLE_MAX_CHARS_PER_COUNT = 7  # 35 bits: more than any h * w under MAX_IMAGE_PIXELS


def is_int(value: Any) -> bool:
    """A JSON integer (``bool`` is an ``int`` subclass in Python but never an id or size)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def check_image_record(image: Any) -> Tuple[Optional[str], Optional[Tuple[int, int]]]:
    """(reason, None) for an unusable image record, else (None, (width, height))."""
    if not isinstance(image, dict) or not is_int(image.get("id")):
        return "image records without an integer id", None
    width, height = image.get("width"), image.get("height")
    # JSON writers sometimes emit 640.0; integral floats are accepted as the integer.
    if isinstance(width, float) and width.is_integer():
        width = int(width)
    if isinstance(height, float) and height.is_integer():
        height = int(height)
    if not (is_int(width) and is_int(height) and width > 0 and height > 0 and width * height <= MAX_IMAGE_PIXELS):
        return "whose image record has a missing or insane width/height", None
    name = image_file_name(image)
    if name is None:
        return "whose image record has no usable file name", None
    return None, (width, height)


def image_file_name(image: Dict[str, Any]) -> Optional[str]:
    """The image's file name, or None when it is missing, absolute, climbs out (``..``) or has a NUL."""
    name = image.get("file_name")
    if not name:
        url = image.get("coco_url")
        name = url.rsplit("/", 1)[-1] if isinstance(url, str) else None
    if not isinstance(name, str) or not name or "\x00" in name:
        return None
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name:
        return None
    return name


def check_box(box: Any, width: int, height: int) -> Optional[str]:
    if not isinstance(box, list) or len(box) != 4:
        return "without a box"
    if not all(is_number(v) for v in box):
        return "with a non-numeric or non-finite box"
    x, y, w, h = (float(v) for v in box)
    if not (w > 0 and h > 0 and x < width and y < height and x + w > 0 and y + h > 0):
        return "with a box outside the image or of zero size"
    return None


def check_annotation(ann: Dict[str, Any], width: int, height: int) -> Optional[str]:
    """Why the (non-crowd, masked) annotation ``ann`` of a ``width`` x ``height`` image is unusable, or None."""
    if not is_int(ann.get("category_id")):
        return "without an integer category_id"
    reason = check_box(ann.get("bbox"), width, height)
    if reason:
        return reason
    area = ann.get("area")
    if area is not None and not (is_number(area) and area >= 0):
        return "with a non-numeric or negative area"
    segmentation = ann["segmentation"]
    if isinstance(segmentation, list):
        return check_polygons(segmentation, width, height)
    if isinstance(segmentation, dict):
        return check_rle(segmentation, width, height)
    return "with a segmentation that is neither polygons nor RLE"


def check_polygons(polygons: list, width: int, height: int) -> Optional[str]:
    import numpy as np

    perimeter = 0.0
    for polygon in polygons:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            return "with a malformed polygon (needs an even number >= 6 of coordinates)"
        if not all(is_number(v) for v in polygon):
            return "with a non-numeric or non-finite polygon coordinate"
        points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        low = -COORDINATE_MARGIN * np.array([width, height])
        high = (1 + COORDINATE_MARGIN) * np.array([width, height])
        if (points < low).any() or (points > high).any():
            return "with polygon coordinates far outside the image"
        closed = np.vstack([points, points[:1]])
        perimeter += float(np.abs(np.diff(closed, axis=0)).max(axis=1).sum())
    if perimeter > MAX_PERIMETER_FACTOR * (width + height):
        return "with polygons too long for their image"
    return None


def check_rle(rle: Dict[str, Any], width: int, height: int) -> Optional[str]:
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(is_int(v) for v in size)):
        return "with an RLE without a [height, width] size"
    if size != [height, width]:
        return "with an RLE size that differs from its image record"
    if isinstance(counts, list):
        if not all(is_int(c) and c >= 0 for c in counts):
            return "with an RLE whose counts are not non-negative integers"
        total = sum(counts)
    elif isinstance(counts, str):
        total = compressed_rle_total(counts)
        if total is None:
            return "with a corrupt compressed RLE string"
    else:
        return "with an RLE without counts"
    if total != height * width:
        return "with an RLE whose counts do not cover height x width pixels"
    return None


def compressed_rle_total(text: str) -> Optional[int]:
    """The pixel total of pycocotools' compressed RLE ``text`` (its ``rleFrString``), or None if corrupt.

    Decoded here in Python so that a bad string never reaches the C decoder, which reads
    past the end of an unterminated count and stores negative counts as huge unsigned ones.
    """
    counts = []
    position = 0
    while position < len(text):
        value = shift = 0
        more = True
        while more:
            if position >= len(text) or shift >= _RLE_MAX_CHARS_PER_COUNT * 5:
                return None
            code = ord(text[position])
            if not _RLE_FIRST <= code <= _RLE_LAST:
                return None
            code -= _RLE_FIRST
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            return None
        counts.append(value)
    return sum(counts)
