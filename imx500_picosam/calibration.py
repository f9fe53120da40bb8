"""Representative data for quantization: deterministic ROI crops of real photographs.

MCT chooses every activation's quantization range from what flows through the network
on this data, so it must look like what the camera will feed: object-sized box prompts on
natural images, cropped by the very ROI rule the sensor applies for the model at hand (its
checkpoint's ``roi_rule``): a ``warp`` model is calibrated on warped crops. The photos and their
roles (``calibration`` vs ``held_out``) are listed in ``calibration_data/manifest.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np

from .errors import PicosamError
from .geometry import crop_to_model_input, roi_from_box, to_model_range
from .hashing import sha256_json, sha256_of
from .images import load_image_rgb

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

    def as_uint8(self) -> np.ndarray:
        """The crops as the sensor delivers them, (N, 96, 96, 3) uint8: what engines take."""
        return np.round(self.images * 256).astype(np.uint8)


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


def _read_manifest(manifest_path: Path) -> dict:
    try:
        return json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise PicosamError(f"{manifest_path}: calibration manifest not found") from None
    except json.JSONDecodeError as err:
        raise PicosamError(f"{manifest_path}: not valid JSON (line {err.lineno})") from None


def crops_fingerprint(role: str = "calibration", calibration_dir: Path = DEFAULT_CALIBRATION_DIR, *,
                      rule: str) -> str:
    """A sha256 that changes whenever :func:`load_crops` would return other crops for ``role``:
    the manifest (seed, crops per photo, roles), every photo it lists with that role and the
    ROI rule. Caches of models quantized on these crops are keyed by it."""
    manifest_path = Path(calibration_dir) / "manifest.json"
    manifest = _read_manifest(manifest_path)
    photos = {p["file"]: sha256_of(Path(calibration_dir) / p["file"]) for p in manifest["photos"] if p["role"] == role}
    fields = {"manifest": sha256_of(manifest_path), "role": role, "photos": photos}
    if rule != "square":  # the square key is the one caches had before rules existed
        fields["roi_rule"] = rule
    return sha256_json(fields)


def load_crops(role: str = "calibration", calibration_dir: Path = DEFAULT_CALIBRATION_DIR, *, rule: str) -> CropSet:
    """All crops of the photos with ``role`` ('calibration' or 'held_out'), in manifest order, cut
    with ROI rule ``rule`` (the checkpoint's)."""
    manifest_path = Path(calibration_dir) / "manifest.json"
    manifest = _read_manifest(manifest_path)
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
            roi = roi_from_box(box, width, height, rule=rule)
            crops.append(to_model_range(crop_to_model_input(image, roi)))
            sources.append((photo["file"], box))
    if not crops:
        raise PicosamError(f"{manifest_path}: no photos with role '{role}'")
    return CropSet(images=np.stack(crops).astype(np.float32), sources=tuple(sources))
