"""Representative data for quantization: deterministic ROI crops of real photographs.

MCT chooses every activation's quantization range from what flows through the network
on this data, so it must look like what the camera will feed: object-sized box prompts on
natural images, cropped by the very ROI rule the sensor applies. The photos and their
roles (``calibration`` vs ``held_out``) are listed in ``calibration_data/manifest.json``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np

from .errors import PicosamError
from .geometry import crop_to_model_input, roi_from_box, to_model_range

# Inside the package, so an installed wheel has it; in a checkout this is a symlink to the
# top-level calibration_data/ (see setup.cfg's package_data).
DEFAULT_CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration_data"
MIN_BOX_FRACTION, MAX_BOX_FRACTION = 0.15, 0.75
MAX_ASPECT = 2.0


@dataclass(frozen=True)
class CropSet:
    """96x96 crops as float32 in [0, 1) with where each came from."""

    images: np.ndarray  # (N, 96, 96, 3) float32
    sources: Tuple[Tuple[str, Tuple[float, float, float, float]], ...]  # (photo, box xywh)


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


def sample_boxes(width: int, height: int, count: int, rng: np.random.Generator) -> List[Tuple[float, ...]]:
    """Object-like COCO boxes: side 15-75 % of the shorter side (padded, up to 90 %), aspect 1:2 to 2:1."""
    shorter = min(width, height)
    boxes = []
    for _ in range(count):
        side = rng.uniform(MIN_BOX_FRACTION, MAX_BOX_FRACTION) * shorter
        aspect = float(np.exp(rng.uniform(-np.log(MAX_ASPECT), np.log(MAX_ASPECT))))
        w = min(side * np.sqrt(aspect), width)
        h = min(side / np.sqrt(aspect), height)
        x = rng.uniform(0, width - w)
        y = rng.uniform(0, height - h)
        boxes.append((float(x), float(y), float(w), float(h)))
    return boxes


def load_crops(role: str = "calibration", calibration_dir: Path = DEFAULT_CALIBRATION_DIR) -> CropSet:
    """All crops of the photos with ``role`` ('calibration' or 'held_out'), in manifest order."""
    manifest_path = Path(calibration_dir) / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise PicosamError(f"{manifest_path}: calibration manifest not found") from None
    except json.JSONDecodeError as err:
        raise PicosamError(f"{manifest_path}: not valid JSON (line {err.lineno})") from None
    crops, sources = [], []
    for index, photo in enumerate(manifest["photos"]):
        if photo["role"] != role:
            continue
        image = load_image_rgb(Path(calibration_dir) / photo["file"])
        height, width = image.shape[:2]
        # One generator per photo, seeded by its position, so adding a photo never
        # changes the crops of the others.
        rng = np.random.default_rng([manifest["seed"], index])
        for box in sample_boxes(width, height, manifest["crops_per_photo"], rng):
            roi = roi_from_box(box, width, height)
            crops.append(to_model_range(crop_to_model_input(image, roi)))
            sources.append((photo["file"], box))
    if not crops:
        raise PicosamError(f"{manifest_path}: no photos with role '{role}'")
    return CropSet(images=np.stack(crops).astype(np.float32), sources=tuple(sources))
