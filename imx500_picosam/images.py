"""Reading photographs: one RGB loader under a pixel cap, and a small decoded-image cache.

Every stage that opens a photograph (calibration, data, evaluation, teachers, proposals,
the emulator's still images, ``picosam segment``) reads it here, so an unreadable or
oversized file is always the same one-line :class:`PicosamError` naming it. Ground floor:
imports no stage.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Tuple

import numpy as np

from .errors import PicosamError

# Pillow's decompression-bomb policy, made strict: an image header may claim at most this
# many pixels (Pillow only warns between 1x and 2x its default). 89.5 M pixels is Pillow's
# own default, far beyond any camera photo or COCO image, and a 268 MB RGB array at most.
MAX_IMAGE_PIXELS = 89_478_485


def _open_image(path: Path):
    """Open ``path`` lazily (header only) under the pixel cap; errors are one line naming it."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except FileNotFoundError:
        raise PicosamError(f"{path}: image file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PicosamError(f"{path}: image header claims more than {MAX_IMAGE_PIXELS:,} pixels; refused") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        # ValueError: a path Pillow cannot open at all (an embedded NUL byte).
        raise PicosamError(f"{path}: cannot read image ({err.__class__.__name__})") from None
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise PicosamError(f"{path}: image header claims {width}x{height} pixels, more than {MAX_IMAGE_PIXELS:,}; refused")
    return image


def image_size(path: Path) -> Tuple[int, int]:
    """(width, height) from the image file's header, without decoding its pixels."""
    with _open_image(path) as image:
        return image.size


def load_image_rgb(path: Path) -> np.ndarray:
    """Read an image file as an RGB uint8 array (one-line error if it cannot be read)."""
    from PIL import Image

    with _open_image(path) as image:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                return np.asarray(image.convert("RGB"))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as err:
            # A header that opened but pixel data that does not decode (truncated, corrupt).
            raise PicosamError(f"{path}: cannot read image ({err.__class__.__name__}: {str(err)[:80]})") from None


class LruCache:
    """Values by key, loaded on first use; the least recently used is dropped beyond ``capacity``."""

    def __init__(self, load: Callable[[Any], Any], capacity: int):
        self.load, self.capacity = load, capacity
        self._values: "OrderedDict[Any, Any]" = OrderedDict()

    def get(self, key):
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key]
        return self.put(key, self.load(key))

    def put(self, key, value):
        """Store ``value`` for ``key`` (replacing what was loaded before); returns it."""
        self._values[key] = value
        self._values.move_to_end(key)
        if len(self._values) > self.capacity:
            self._values.popitem(last=False)
        return value


class ImageCache(LruCache):
    """Decoded RGB images by path (training and evaluation revisit the same photographs)."""

    def __init__(self, capacity: int = 64):
        super().__init__(load_image_rgb, capacity)
