"""Stage: instance data. COCO / LVIS annotation files -> (image, box, mask) records -> ROI crops.

COCO-format files are read with pycocotools, LVIS v1 files with the ``lvis`` package, so
polygons, uncompressed and compressed RLE are all decoded by the field's own code. Every
instance becomes an :class:`Instance`; what cannot be used (crowd regions, instances
without a mask, boxes outside their image, missing image files) is counted in
:attr:`InstanceSet.skipped`, never raised mid-epoch. A file that cannot be used at all
(missing, not JSON, no images, no masks anywhere) stops with one line naming it.

Crops go through the one ROI rule in :mod:`.geometry`: bilinear for the image, nearest for
the mask, exactly what the camera and the evaluation see.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import PicosamError
from ..geometry import Roi, crop_mask_to_model_input, crop_to_model_input, jitter_box, roi_from_box
from ..images import ImageCache, image_size

# COCO's object-size buckets, by mask area in pixels.
SMALL_AREA = 32 * 32
MEDIUM_AREA = 96 * 96


@dataclass(frozen=True)
class Instance:
    image_id: int
    annotation_id: int
    image_path: Path
    image_width: int
    image_height: int
    box_xywh: Tuple[float, float, float, float]
    area: float
    category_id: int


@dataclass
class InstanceSet:
    """The usable instances of one annotation file, and counts of what was skipped."""

    annotations_path: Path
    images_dir: Path
    format: str  # "coco" or "lvis"
    instances: List[Instance]
    skipped: Counter = field(default_factory=Counter)
    _api: Any = None  # the pycocotools COCO or lvis LVIS index, for mask decoding

    def decode_mask(self, instance: Instance) -> np.ndarray:
        """The instance's full-image mask, bool (H, W)."""
        ann = self._api.anns[instance.annotation_id]
        mask = self._api.annToMask(ann) if self.format == "coco" else self._api.ann_to_mask(ann)
        return mask.astype(bool)

    def image_ids(self) -> List[int]:
        return sorted({inst.image_id for inst in self.instances})

    def by_image(self) -> "OrderedDict[int, List[Instance]]":
        grouped: "OrderedDict[int, List[Instance]]" = OrderedDict()
        for inst in sorted(self.instances, key=lambda i: (i.image_id, i.annotation_id)):
            grouped.setdefault(inst.image_id, []).append(inst)
        return grouped

    def subset(self, image_ids: Iterable[int]) -> "InstanceSet":
        keep = set(image_ids)
        return InstanceSet(
            self.annotations_path, self.images_dir, self.format,
            [i for i in self.instances if i.image_id in keep], Counter(self.skipped), self._api,
        )

    def skipped_summary(self) -> str:
        if not self.skipped:
            return "nothing skipped"
        return "skipped: " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))


def size_bucket(area: float) -> str:
    """COCO's small / medium / large, by mask area."""
    if area < SMALL_AREA:
        return "small"
    if area < MEDIUM_AREA:
        return "medium"
    return "large"


def _read_annotation_json(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise PicosamError(f"{path}: annotation file not found")
    try:
        with open(path, "rb") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PicosamError(f"{path}: not valid JSON ({err.__class__.__name__})") from None
    except (ValueError, RecursionError) as err:  # an integer of > 4300 digits, nesting too deep
        raise PicosamError(f"{path}: not usable JSON ({err.__class__.__name__}: {str(err)[:80]})") from None
    except OSError as err:
        raise PicosamError(f"{path}: cannot read ({err.strerror or err.__class__.__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise PicosamError(f"{path}: not a COCO/LVIS instances file (needs 'images' and 'annotations' lists)")
    if not data["images"]:
        raise PicosamError(f"{path}: lists no images")
    if not any(isinstance(a, dict) and a.get("segmentation") for a in data["annotations"]):
        raise PicosamError(f"{path}: no annotation has a mask ('segmentation'); box-only files cannot train or evaluate masks")
    return data


def _detect_format(data: Dict[str, Any]) -> str:
    # LVIS v1 images carry coco_url and no file_name, and the file lists federated labels.
    records = [img for img in data["images"][:10] if isinstance(img, dict)]
    if records and "file_name" not in records[0] and "coco_url" in records[0]:
        return "lvis"
    if any("not_exhaustive_category_ids" in img for img in records):
        return "lvis"
    return "coco"


def _image_path(images_dir: Path, image: Dict[str, Any], name: str) -> Path:
    direct = images_dir / name
    if direct.exists() or not isinstance(image.get("coco_url"), str):
        return direct
    # LVIS v1 draws its images from COCO's train2017 and val2017 folders.
    parts = str(image["coco_url"]).rstrip("/").rsplit("/", 2)
    split = parts[-2] if len(parts) == 3 else ""
    if not split or split in (".", "..") or "\x00" in split:
        return direct
    return images_dir / split / name


def _build_index(path: Path, data: Dict[str, Any], fmt: str):
    if fmt == "coco":
        from pycocotools.coco import COCO

        api = COCO()
        api.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            api.createIndex()
        return api
    try:
        from lvis import LVIS
    except ImportError:
        raise PicosamError(f"{path}: is an LVIS file; install the lvis package (make setup does)") from None
    api = LVIS.__new__(LVIS)  # LVIS() would read and parse the file a second time
    import logging

    api.logger = logging.getLogger("lvis")
    api.dataset = data
    api._create_index()
    return api


def _image_file_problem(path: Path, width: int, height: int) -> Optional[str]:
    """Why the photo at ``path`` cannot back a ``width`` x ``height`` record, from its header alone."""
    try:
        if not path.is_file():
            return "whose image file is missing"
        if path.stat().st_size == 0:
            return "whose image file is empty or not a readable image"
    except (OSError, ValueError):
        return "whose image file is missing"
    try:
        actual = image_size(path)
    except PicosamError:
        return "whose image file is empty or not a readable image"
    if actual != (width, height):
        return "whose image file's size differs from its image record"
    return None


def load_instances(
    annotations_path: Path,
    images_dir: Path,
    annotation_format: str = "auto",
    max_images: Optional[int] = None,
) -> InstanceSet:
    """Read a COCO-format or LVIS v1 instances file; keep non-crowd instances with a mask.

    Every record is checked (:mod:`.annotations_check`) and every photo's header read
    before pycocotools / lvis index anything: only usable records reach the index, so
    decoding a mask later cannot crash or allocate without bound. Unusable records are
    counted in :attr:`InstanceSet.skipped`; two annotations or images sharing an id are
    an error, since one of them would silently take the other's mask.
    """
    from . import annotations_check as check

    annotations_path, images_dir = Path(annotations_path), Path(images_dir)
    if not images_dir.is_dir():
        raise PicosamError(f"{images_dir}: images folder not found")
    data = _read_annotation_json(annotations_path)
    fmt = _detect_format(data) if annotation_format == "auto" else annotation_format
    if fmt not in ("coco", "lvis"):
        raise PicosamError(f"annotation format '{annotation_format}' is not coco, lvis or auto")

    skipped: Counter = Counter()
    images: Dict[int, Dict[str, Any]] = {}
    sizes: Dict[int, Tuple[int, int]] = {}
    for image in data["images"]:
        reason, size = check.check_image_record(image)
        if reason:
            skipped[reason] += 1
            continue
        if image["id"] in images:
            raise PicosamError(f"{annotations_path}: image id {image['id']} is listed twice")
        images[image["id"]], sizes[image["id"]] = image, size
    wanted = sorted(images)
    if max_images is not None:
        wanted = wanted[:max_images]
    wanted_set = set(wanted)
    seen_ids: set = set()
    kept: List[Dict[str, Any]] = []
    instances: List[Instance] = []
    image_paths: Dict[int, Path] = {}
    file_problem: Dict[int, Optional[str]] = {}
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or not check.is_int(ann.get("id")):
            skipped["annotations without an integer id"] += 1
            continue
        if ann["id"] in seen_ids:
            raise PicosamError(f"{annotations_path}: annotation id {ann['id']} is listed twice")
        seen_ids.add(ann["id"])
        image_id = ann.get("image_id")
        image = images.get(image_id) if check.is_int(image_id) else None
        if image is None:
            skipped["with an unknown image id"] += 1
            continue
        if image_id not in wanted_set:
            continue
        if ann.get("iscrowd", 0):
            skipped["crowd regions"] += 1
            continue
        if not ann.get("segmentation"):
            skipped["without a mask"] += 1
            continue
        width, height = sizes[image_id]
        if image_id not in file_problem:
            image_paths[image_id] = _image_path(images_dir, image, check.image_file_name(image))
            file_problem[image_id] = _image_file_problem(image_paths[image_id], width, height)
        reason = file_problem[image_id] or check.check_annotation(ann, width, height)
        if reason:
            skipped[reason] += 1
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        kept.append(ann)
        instances.append(
            Instance(
                image_id=image_id, annotation_id=ann["id"], image_path=image_paths[image_id],
                image_width=width, image_height=height, box_xywh=(x, y, w, h),
                area=float(ann.get("area") or w * h), category_id=ann["category_id"],
            )
        )
    if not instances:
        raise PicosamError(f"{annotations_path}: no usable instance ({', '.join(f'{n} {k}' for k, n in skipped.items()) or 'none listed'})")
    # The index holds only checked records, with integer sizes; decoding needs no categories.
    index_images = [dict(images[i], width=sizes[i][0], height=sizes[i][1]) for i in sorted({a["image_id"] for a in kept})]
    api = _build_index(annotations_path, {"images": index_images, "annotations": kept, "categories": []}, fmt)
    return InstanceSet(annotations_path, images_dir, fmt, instances, skipped, api)


@dataclass(frozen=True)
class Crop:
    image: np.ndarray  # (96, 96, 3) uint8, the model's input before the 1/256 scale
    mask: np.ndarray  # (96, 96) bool, ground truth inside the ROI
    roi: Roi
    box_xywh: Tuple[float, float, float, float]  # the prompt actually used (after jitter)


def crop_instance(
    image: np.ndarray,
    mask: np.ndarray,
    box_xywh: Sequence[float],
    jitter: float = 0.0,
    rng: Optional[np.random.Generator] = None,
    *,
    rule: str,
) -> Crop:
    """The ROI crop of one instance under ROI rule ``rule``, optionally prompted with a jittered box."""
    height, width = image.shape[:2]
    box = jitter_box(box_xywh, jitter, rng) if jitter > 0 and rng is not None else tuple(float(v) for v in box_xywh)
    roi = roi_from_box(box, width, height, rule=rule)
    return Crop(crop_to_model_input(image, roi), crop_mask_to_model_input(mask, roi), roi, box)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation. The ROI rule itself is never changed, only its input: the
    box (jitter) and the pixels (flip, colour, copy-paste)."""

    box_jitter: float = 0.1  # each box edge moves by up to this fraction of the box size
    horizontal_flip: bool = True
    colour: float = 0.2  # brightness / contrast / saturation spread
    copy_paste: float = 0.0  # probability of pasting another image's object over the crop



NO_AUGMENTATION = Augmentation(box_jitter=0.0, horizontal_flip=False, colour=0.0, copy_paste=0.0)


def augment_colour(crop: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    if strength <= 0:
        return crop
    pixels = crop.astype(np.float32)
    brightness = 1.0 + rng.uniform(-strength, strength)
    contrast = 1.0 + rng.uniform(-strength, strength)
    saturation = 1.0 + rng.uniform(-strength, strength)
    grey = pixels.mean(axis=2, keepdims=True)
    pixels = grey + (pixels - grey) * saturation
    mean = pixels.mean()
    pixels = (pixels - mean) * contrast + mean
    return np.clip(pixels * brightness, 0, 255).astype(np.uint8)


def paste_object(crop: Crop, donor: Crop, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copy-paste augmentation (Ghiasi et al., 2021): another image's object, cut out along
    its exact human mask, scaled to 25-75 % of the crop and pasted at a random place.

    The pasted object lies *on top*: it occludes the prompted object, so the target mask
    loses those pixels. This teaches the two things a box prompt gets wrong most often:
    a distractor inside the box is not the object, and an occluded object has a hole.
    Returns (image, mask, pasted) at 96x96; ``pasted`` says where the donor landed.
    """
    import cv2

    size = crop.image.shape[0]
    side = int(round(size * rng.uniform(0.25, 0.75)))
    x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
    patch = cv2.resize(donor.image, (side, side), interpolation=cv2.INTER_AREA)
    patch_mask = cv2.resize(donor.mask.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST) > 0
    pasted = np.zeros((size, size), dtype=bool)
    pasted[y0 : y0 + side, x0 : x0 + side] = patch_mask
    image = crop.image.copy()
    image[y0 : y0 + side, x0 : x0 + side][patch_mask] = patch[patch_mask]
    return image, crop.mask & ~pasted, pasted


def iterate_crops(
    instances: InstanceSet,
    order: Sequence[int],
    augmentation: Augmentation = NO_AUGMENTATION,
    seed: int = 0,
    teacher_cache=None,
    images: Optional["ImageCache"] = None,
    first_position: int = 0,
    *,
    rule: str,
) -> Iterator[Dict[str, Any]]:
    """Yield training examples for ``instances.instances[i] for i in order``, cropped with ROI
    rule ``rule`` (the rule the trained checkpoint will carry).

    Example ``j`` of ``order`` is augmented by a generator seeded with
    ``(seed, first_position + j)``: a caller that resumes part-way through an order passes
    the tail of it with ``first_position`` set to where the tail starts, and gets the same
    examples as the whole order would have given there.

    Each example holds the uint8 crop, the ground-truth crop, and, where ``teacher_cache`` is
    given, the teacher's 96x96 logits and score for the same ROI. The teacher saw the
    un-jittered ROI, so with box jitter the teacher target is resampled into the jittered
    ROI's frame (both are rectangles of the same image); a cache made in the other rule's frame
    is resampled the same way. With copy-paste the teacher never
    saw the pasted object: its logits are set to background there.

    ``images`` is the decoded-photo cache; a training run passes one that holds every photo
    of a subset-sized set, so each JPEG is decoded once per run (not once per example).
    """
    from ..geometry import MODEL_INPUT_SIZE

    if images is None:
        images = ImageCache(capacity=256)
    count = len(instances.instances)
    for position, index in enumerate(order):
        inst = instances.instances[index]
        rng = np.random.default_rng([seed, first_position + position])
        try:
            image = images.get(inst.image_path)
        except PicosamError:  # its header read fine at load time, its pixels do not decode (now)
            instances.skipped["whose image failed to decode mid-epoch"] += 1
            continue
        mask = instances.decode_mask(inst)
        crop = crop_instance(image, mask, inst.box_xywh, augmentation.box_jitter, rng, rule=rule)
        example: Dict[str, Any] = {"image": crop.image, "mask": crop.mask, "annotation_id": inst.annotation_id}
        if teacher_cache is not None:
            entry = teacher_cache.lookup(inst)
            teacher_roi = roi_from_box(inst.box_xywh, image.shape[1], image.shape[0], rule=teacher_cache.roi_rule)
            example["teacher_logits"] = resample_between_rois(entry.logits, teacher_roi, crop.roi, MODEL_INPUT_SIZE)
            example["teacher_score"] = entry.score
        if augmentation.copy_paste > 0 and count > 1 and rng.random() < augmentation.copy_paste:
            donor_inst = instances.instances[int(rng.integers(count))]
            try:
                donor_image = images.get(donor_inst.image_path) if donor_inst.image_id != inst.image_id else None
            except PicosamError:  # a donor photo that stopped decoding: no paste this time
                instances.skipped["donor photos that failed to decode mid-epoch"] += 1
                donor_image = None
            if donor_image is not None:
                donor = crop_instance(donor_image, instances.decode_mask(donor_inst), donor_inst.box_xywh, rule=rule)
                example["image"], example["mask"], pasted = paste_object(crop, donor, rng)
                if "teacher_logits" in example:
                    example["teacher_logits"] = np.where(pasted, np.float32(-20.0), example["teacher_logits"])
        if augmentation.horizontal_flip and rng.random() < 0.5:
            for key in ("image", "mask", "teacher_logits"):
                if key in example:
                    example[key] = np.ascontiguousarray(example[key][:, ::-1])
        example["image"] = augment_colour(example["image"], augmentation.colour, rng)
        yield example


def resample_between_rois(logits: np.ndarray, source: Roi, target: Roi, size: int) -> np.ndarray:
    """Map a ``size`` x ``size`` crop of ``source`` into the frame of ``target`` (bilinear).

    Pixels of ``target`` outside ``source`` get a strongly negative logit (background): the
    teacher said nothing there, and the object lies inside its own ROI.
    """
    import cv2

    logits = np.asarray(logits, dtype=np.float32)
    if source == target:
        return logits
    # target pixel centre (u, v) -> frame -> source pixel coordinates.
    scale_x = (target.width / size) * (size / source.width)
    scale_y = (target.height / size) * (size / source.height)
    offset_x = (target.x0 - source.x0) * size / source.width + 0.5 * scale_x - 0.5
    offset_y = (target.y0 - source.y0) * size / source.height + 0.5 * scale_y - 0.5
    matrix = np.array([[scale_x, 0.0, offset_x], [0.0, scale_y, offset_y]], dtype=np.float64)
    return cv2.warpAffine(
        logits, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=-20.0,
    )
