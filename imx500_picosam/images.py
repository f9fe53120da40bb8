"""Reading photographs: one RGB loader and a small decoded-image cache.

Every stage that opens a photograph (calibration, data, evaluation, teachers, proposals,
the emulator's still images, ``picosam segment``) reads it here, so an unreadable file is
always the same one-line :class:`PicosamError` naming it. Ground floor: imports no stage.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import PicosamError


def load_image_rgb(path: Path) -> np.ndarray:
    """Read an image file as an RGB uint8 array (one-line error if it cannot be read)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise PicosamError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as err:
        raise PicosamError(f"{path}: cannot read image ({err.__class__.__name__})") from None


class LruCache:
    """Values by key, loaded on first use; the least recently used is dropped beyond ``capacity``."""

    def __init__(self, load: Callable[[Any], Any], capacity: int):
        self.load, self.capacity = load, capacity
        self._values: "OrderedDict[Any, Any]" = OrderedDict()

    def get(self, key):
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key]
        value = self.load(key)
        self._values[key] = value
        if len(self._values) > self.capacity:
            self._values.popitem(last=False)
        return value


class ImageCache(LruCache):
    """Decoded RGB images by path (training and evaluation revisit the same photographs)."""

    def __init__(self, capacity: int = 64):
        super().__init__(load_image_rgb, capacity)
