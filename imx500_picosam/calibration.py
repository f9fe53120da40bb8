"""Representative data for quantization: deterministic ROI crops of real photographs.

MCT chooses every activation's quantization range from what flows through the network
on this data, so it must look like what the camera will feed: object-sized box prompts on
natural images, cropped by the very ROI rule the sensor applies for the model at hand (its
checkpoint's ``roi_rule``): a ``warp`` model is calibrated on warped crops. The photos and their
roles (``calibration`` vs ``held_out``) are listed in ``calibration_data/manifest.json``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

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


def _crop(image: np.ndarray, box, rule: str) -> np.ndarray:
    """The model-range crop of ``box`` cut by ROI rule ``rule``, as the sensor would cut it."""
    height, width = image.shape[:2]
    return to_model_range(crop_to_model_input(image, roi_from_box(box, width, height, rule=rule)))


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
            crops.append(_crop(image, box, rule))
            sources.append((photo["file"], box))
    if not crops:
        raise PicosamError(f"{manifest_path}: no photos with role '{role}'")
    return CropSet(images=np.stack(crops).astype(np.float32), sources=tuple(sources))


# --- Your own calibration data (``picosam build --calibration PATH``) ---------------------------

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_CROPS = 80  # the bundled set's count: 5 calibration photos x 16 crops
MAX_CROPS = 100_000
USER_SEED = 20261124  # the bundled manifest's seed: one draw rule for every set


@dataclass(frozen=True)
class CalibrationSource:
    """Photos of your own to calibrate on, instead of the bundled set: ``crops`` crops, each cut
    with the checkpoint's ROI rule around a prompt box. ``boxes`` per photo are the objects'
    boxes (from COCO annotations); ``None`` samples object-like boxes as the bundled set does.
    Deterministic: the same source gives the same crops, and :meth:`fingerprint` keys the
    quantized-model cache by the photos' contents, the boxes, the count and the rule."""

    label: str  # what the user gave: the folder or the annotations file
    kind: str  # "photos" or "coco"
    photos: Tuple[Tuple[str, Optional[Tuple[Tuple[float, float, float, float], ...]]], ...]
    crops: int = DEFAULT_CROPS

    def plan(self) -> List[Tuple[int, Tuple[float, float, float, float]]]:
        """(photo index, box) for every crop, in order; with sampled boxes the photos' sizes
        are read from their headers."""
        from .images import image_size

        rng = np.random.default_rng([USER_SEED, self.crops])
        if self.kind == "coco":  # a seeded choice of the annotated objects
            pool = [(index, box) for index, (_, boxes) in enumerate(self.photos) for box in boxes or ()]
            order = rng.permutation(len(pool))[: self.crops]
            return sorted(pool[i] for i in order)
        # The photos take turns, in a seeded order: fewer crops than photos still spreads them.
        share, extra = divmod(self.crops, len(self.photos))
        rank = np.argsort(rng.permutation(len(self.photos)))
        plan = []
        for index, (path, _) in enumerate(self.photos):
            count = share + int(rank[index] < extra)
            if count:
                width, height = image_size(Path(path))
                photo_rng = np.random.default_rng([USER_SEED, index])
                plan += [(index, box) for box in sample_boxes(width, height, count, photo_rng)]
        return plan

    def fingerprint(self, rule: str) -> str:
        """Changes whenever :meth:`load` would return other crops."""
        plan = self.plan()
        used = sorted({index for index, _ in plan})
        return sha256_json({"kind": self.kind, "roi_rule": rule, "boxes": [[i, list(b)] for i, b in plan],
                            "photos": {str(i): sha256_of(self.photos[i][0]) for i in used}})

    def load(self, rule: str) -> CropSet:
        return _load_source(self, rule)


@functools.lru_cache(maxsize=2)  # the build reads them, then quantize (and its cache key)
def _load_source(source: CalibrationSource, rule: str) -> CropSet:
    from tqdm import tqdm

    plan = source.plan()
    crops, sources, current, image = [], [], None, None
    for index, box in tqdm(plan, desc="calibration crops", unit="crop", disable=None, leave=False):
        path = source.photos[index][0]
        if index != current:
            image, current = load_image_rgb(Path(path)), index
        crops.append(_crop(image, box, rule))
        sources.append((path, box))
    return CropSet(images=np.stack(crops).astype(np.float32), sources=tuple(sources))


def photo_folder(folder: Path, crops: int = DEFAULT_CROPS) -> CalibrationSource:
    """Every photo under ``folder`` (``PHOTO_SUFFIXES``, sorted, hidden files left out), taking
    turns to give ``crops`` crops around sampled object-like boxes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PicosamError(f"{folder}: calibration folder not found")
    photos = sorted(str(p) for p in folder.rglob("*")
                    if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not photos:
        raise PicosamError(f"{folder}: no photos in it ({', '.join(PHOTO_SUFFIXES)})")
    return CalibrationSource(label=str(folder), kind="photos", photos=tuple((p, None) for p in photos),
                             crops=_checked_crops(crops))


def annotated_photos(label: str, boxes_by_photo, crops: int = DEFAULT_CROPS) -> CalibrationSource:
    """Annotated objects (``{photo path: [box xywh, ...]}``, e.g. a COCO file's instances):
    ``crops`` of them, a seeded choice, each cut around its own box."""
    photos = tuple((str(path), tuple(tuple(float(v) for v in box) for box in boxes))
                   for path, boxes in sorted(boxes_by_photo.items()) if boxes)
    if not photos:
        raise PicosamError(f"{label}: no annotated objects to calibrate on")
    return CalibrationSource(label=str(label), kind="coco", photos=photos, crops=_checked_crops(crops))


def _checked_crops(crops: int) -> int:
    if not 1 <= int(crops) <= MAX_CROPS:
        raise PicosamError(f"calibration crops {crops}: give 1 to {MAX_CROPS}")
    return int(crops)
