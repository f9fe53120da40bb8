"""The Python API: a checkpoint and an image with box prompts -> masks at the image's size.

```python
import imx500_picosam
model = imx500_picosam.load()                       # the shipped checkpoint, float
result = model("photo.jpg", [(150, 60, 150, 140)])  # one box or many, COCO x,y,w,h pixels
result.masks                                        # (N, H, W) bool, one mask per box
```

The same path the camera takes, on the CPU: each box becomes an ROI by the shared geometry
rule (the checkpoint's ``roi_rule``: ``warp`` or the authors' ``square``), the ROI is stretched to 96x96, an engine (which scales it like the sensor's input,
1/256) returns 96x96 logits, and the logits are pasted back into the frame. ``kind="int8"``
runs MCT's INT8 export of the network ``make rpk`` builds (what the sensor computes, as the
emulator runs it); ``kind="quantized"`` MCT's quantized Keras model. docs/api.md has the
details.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import PicosamError
from .geometry import LEGACY_ROI_RULE, Roi, check_rule, crop_to_model_input, paste_logits, roi_from_box
from .toolchain import quiet_tensorflow

# API name -> engine kind of :func:`imx500_picosam.firmware.engines.load_engine`.
KINDS = {"float": "float", "quantized": "quantized", "int8": "tflite"}

Box = Sequence[float]


@dataclass(frozen=True)
class Segmentation:
    """One box's answer."""

    box: Tuple[float, float, float, float]
    roi: Roi  # the square crop the model saw, in image pixels
    crop_logits: np.ndarray  # (96, 96) float32, the model's raw output for the ROI crop
    mask: np.ndarray  # (H, W) bool, pasted back into the frame

    @property
    def logits(self) -> np.ndarray:
        """(H, W) float32 logits in image coordinates: the crop's logits resized (bilinearly) to
        the ROI, ``-inf`` outside it, so ``logits > 0`` is exactly :attr:`mask`."""
        import cv2

        height, width = self.mask.shape
        frame = np.full((height, width), -np.inf, dtype=np.float32)
        roi = self.roi
        frame[roi.y0:roi.y1, roi.x0:roi.x1] = cv2.resize(np.asarray(self.crop_logits, dtype=np.float32),
                                                         (roi.width, roi.height), interpolation=cv2.INTER_LINEAR)
        return frame


@dataclass(frozen=True)
class Result:
    """Every box's answer for one image, in the order the boxes were given."""

    segmentations: List[Segmentation]

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool."""
        return np.stack([s.mask for s in self.segmentations])

    @property
    def logits(self) -> np.ndarray:
        """(N, H, W) float32 logits in image coordinates (``-inf`` outside each ROI)."""
        return np.stack([s.logits for s in self.segmentations])

    @property
    def crop_logits(self) -> np.ndarray:
        """(N, 96, 96) float32: the model's raw outputs."""
        return np.stack([s.crop_logits for s in self.segmentations])

    @property
    def rois(self) -> List[Roi]:
        return [s.roi for s in self.segmentations]

    def __len__(self) -> int:
        return len(self.segmentations)

    def __iter__(self):
        return iter(self.segmentations)

    def __getitem__(self, index: int) -> Segmentation:
        return self.segmentations[index]


class Predictor:
    """Still-image inference with any :mod:`~imx500_picosam.firmware.engines` engine.

    ``Predictor.from_checkpoint(...)`` (or :func:`load`) makes one; call it with an image and
    one or many boxes.
    """

    def __init__(self, engine, checkpoint=None, kind: str = "float", roi_rule: Optional[str] = None):
        """``roi_rule`` defaults to the checkpoint's; a bare engine without a checkpoint is taken
        to be the authors' ``square``."""
        self.engine = engine
        self.checkpoint = checkpoint
        self.kind = kind
        self.roi_rule = check_rule(roi_rule or (checkpoint.roi_rule if checkpoint is not None else LEGACY_ROI_RULE))

    @classmethod
    def from_checkpoint(cls, checkpoint=None, kind: str = "float",
                        log: Optional[Callable[[str], None]] = None) -> "Predictor":
        """``checkpoint`` is what ``--checkpoint`` takes: None (the shipped checkpoint), a
        ``NAME.weights.h5``, a folder from ``import-weights``/``train``, the authors' ``.pt``, or
        an already read :class:`~imx500_picosam.model.checkpoint.Checkpoint`. ``kind``:
        ``float`` (as trained), ``quantized`` (MCT's model as ``make rpk`` quantizes it) or
        ``int8`` (MCT's INT8 export of it: what the sensor computes)."""
        if kind not in KINDS:
            raise PicosamError(f"kind '{kind}' is not one of {', '.join(KINDS)}")
        quiet_tensorflow()
        from .firmware.engines import load_engine
        from .model.checkpoint import Checkpoint
        from .model.resolve import UNTRAINED_WARNING, is_untrained, resolve_checkpoint

        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else resolve_checkpoint(checkpoint)
        if is_untrained(ckpt) and log is not None:
            log(f"!!! {UNTRAINED_WARNING}")
        return cls(load_engine(ckpt, KINDS[kind], log=log), checkpoint=ckpt, kind=kind)

    def __call__(self, image: Union[str, Path, np.ndarray], boxes: Union[Box, Sequence[Box]]) -> Result:
        """Segment ``image`` (a file path, or an (H, W, 3) uint8 RGB array) in each box
        (COCO ``x, y, w, h`` in image pixels; one box or a list of them), in one batch."""
        rgb = _as_rgb(image)
        box_list = _as_boxes(boxes)
        height, width = rgb.shape[:2]
        try:
            rois = [self._roi(box, width, height) for box in box_list]
        except PicosamError as err:
            if not isinstance(image, (str, Path)):
                raise
            raise PicosamError(f"{image}: {err}") from None
        crops = np.stack([crop_to_model_input(rgb, roi) for roi in rois])
        all_logits = self.engine.predict_crops(crops)
        return Result([Segmentation(box=tuple(float(v) for v in box), roi=roi, crop_logits=logits,
                                    mask=paste_logits(logits, roi, height, width))
                       for box, roi, logits in zip(box_list, rois, all_logits)])

    def segment(self, image: Union[str, Path, np.ndarray], box: Box) -> Segmentation:
        """One box: ``self(image, [box])[0]``."""
        return self(image, [box])[0]

    def _roi(self, box: Box, width: int, height: int) -> Roi:
        # The one place the predictor turns a box into the crop the model sees: the model's rule.
        return roi_from_box(box, width, height, rule=self.roi_rule)


def load(checkpoint=None, kind: str = "float", log: Optional[Callable[[str], None]] = None) -> Predictor:
    """A :class:`Predictor` for ``checkpoint`` (default: the shipped one) run as ``kind``
    (``float``, ``quantized`` or ``int8``). The untrained warning, if any, goes to ``log``
    (default: a Python warning)."""
    if log is None:
        import warnings

        def log(line: str) -> None:
            if line.startswith("!!!"):
                warnings.warn(line[4:], stacklevel=3)
    return Predictor.from_checkpoint(checkpoint, kind=kind, log=log)


def _as_rgb(image) -> np.ndarray:
    if isinstance(image, (str, Path)):
        from .images import load_image_rgb

        return load_image_rgb(Path(image))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise PicosamError(f"image: expected an (H, W, 3) uint8 RGB array or a file path, got shape "
                           f"{array.shape} {array.dtype}")
    return array


def _as_boxes(boxes) -> List[Tuple[float, ...]]:
    try:
        array = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise PicosamError(f"boxes: expected x,y,w,h numbers or a list of them, got {boxes!r}") from None
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4 or array.shape[0] == 0:
        raise PicosamError(f"boxes: expected x,y,w,h or a list of them (N x 4), got shape {array.shape}")
    return [tuple(row) for row in array.tolist()]
