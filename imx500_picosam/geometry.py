"""Region-of-interest geometry shared by training, evaluation, calibration and the camera.

PicoSAM is prompted by *where it looks*: the box prompt becomes a region of interest
(ROI) that is cut out of the frame and stretched to the model's 96x96 input. On the
Raspberry Pi AI Camera the IMX500 performs that crop itself
(``IMX500.set_inference_roi_abs``), so the rule below has to be the one rule used
everywhere, or the camera would see different crops than the model was trained on.

There are two rules, and which one a model needs is a property of its checkpoint
(``Checkpoint.roi_rule``; ``ROI_RULES``):

``square`` -- the authors' ``pad_bbox_to_square``:

1. pad the box by 10 % of its width / height on each side;
2. make it a square whose side is the padded box's longer side, around its centre;
3. clip the square to the frame (at a border it becomes a clipped rectangle, which the
   resize then stretches — the model was trained on exactly such stretched crops);
4. truncate the corners to whole pixels with ``int()``.

``warp`` -- this project's: steps 1, 3 and 4 without step 2. The padded box itself is
clipped and stretched to 96x96, so the network sees where the box's short side is (Mask
R-CNN's RoIAlign does the same). The IMX500 scales any ROI rectangle to its input tensor
(``set_inference_roi_abs``; no aspect-ratio or scale limit is documented or enforced by
picamera2), so the sensor needs no other clamp; the only one is the minimum size below,
the same in training and on the camera.

Both rules share the padding, the clipping, the truncation and the minimum size; the
crop-protocol IoU of the paper is always measured in the ``square`` ROI, whatever rule
the model uses (see ``learn.evaluate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

from .errors import PicosamError

MODEL_INPUT_SIZE = 96
DEFAULT_PADDING = 0.1
# The ROI rules a checkpoint can be trained with; a checkpoint that names none is the authors'.
ROI_RULES = ("square", "warp")
LEGACY_ROI_RULE = "square"
# The warp rule's shortest side in pixels: a 1-pixel-wide box would otherwise be stretched
# 96x into the model's input (the same in training, evaluation and on the sensor).
WARP_MIN_SIDE = 2


def check_rule(rule: str) -> str:
    """``rule`` if it is one of ``ROI_RULES``, else a one-line error."""
    if rule not in ROI_RULES:
        raise PicosamError(f"ROI rule '{rule}' is not one of {', '.join(ROI_RULES)}")
    return rule


@dataclass(frozen=True)
class Roi:
    """A half-open pixel rectangle ``[x0, x1) x [y0, y1)`` inside a frame."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def as_xywh(self) -> Tuple[int, int, int, int]:
        return (self.x0, self.y0, self.width, self.height)


def parse_box(text: str) -> Tuple[float, float, float, float]:
    """Parse a COCO ``x,y,w,h`` string as given on the command line."""
    parts = text.replace(" ", "").split(",")
    if len(parts) != 4:
        raise PicosamError(f"box '{text}': expected four numbers x,y,w,h")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise PicosamError(f"box '{text}': expected four numbers x,y,w,h") from None
    return values  # type: ignore[return-value]


def check_box(box_xywh: Sequence[float], frame_width: int, frame_height: int) -> Tuple[float, float, float, float]:
    """The box as floats if it is a usable prompt for a ``frame_width`` x ``frame_height``
    frame: finite, of positive area and overlapping the frame; else a one-line error."""
    x, y, w, h = (float(v) for v in box_xywh)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise PicosamError(f"box {tuple(box_xywh)}: coordinates must be finite numbers")
    if w <= 0 or h <= 0:
        raise PicosamError(f"box {tuple(box_xywh)}: width and height must be positive")
    if frame_width <= 0 or frame_height <= 0:
        raise PicosamError(f"frame {frame_width}x{frame_height}: size must be positive")
    if x >= frame_width or y >= frame_height or x + w <= 0 or y + h <= 0:
        raise PicosamError(
            f"box {tuple(box_xywh)} lies outside the {frame_width}x{frame_height} frame"
        )
    return x, y, w, h


def roi_from_box(
    box_xywh: Sequence[float],
    frame_width: int,
    frame_height: int,
    *,
    rule: str,
    padding: float = DEFAULT_PADDING,
    min_size: int = 1,
) -> Roi:
    """Turn a COCO ``(x, y, w, h)`` box into the ROI a model trained with ``rule`` sees.

    ``rule`` is ``square`` (the authors') or ``warp`` (see the module docstring); callers take
    it from the checkpoint (``Checkpoint.roi_rule``), never from a default of their own, so
    it has none. ``min_size`` (pixels) widens a degenerate ROI symmetrically, still inside
    the frame; with the default of 1 the authors' rule is unchanged for every box of positive
    area, and ``warp`` never goes below ``WARP_MIN_SIDE``.
    """
    check_rule(rule)
    x, y, w, h = check_box(box_xywh, frame_width, frame_height)
    pad_w, pad_h = w * padding, h * padding
    x, y, w, h = x - pad_w, y - pad_h, w + 2 * pad_w, h + 2 * pad_h
    if rule == "square":
        side = max(w, h)
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = cx - side / 2, cy - side / 2
        x1, y1 = x0 + side, y0 + side
    else:
        x0, y0, x1, y1 = x, y, x + w, y + h
        min_size = max(min_size, WARP_MIN_SIDE)
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(float(frame_width), x1), min(float(frame_height), y1)
    roi = Roi(int(x0), int(y0), int(x1), int(y1))
    return _ensure_min_size(roi, frame_width, frame_height, min_size)


def _ensure_min_size(roi: Roi, frame_width: int, frame_height: int, min_size: int) -> Roi:
    def widen(lo: int, hi: int, limit: int) -> Tuple[int, int]:
        need = min(min_size, limit) - (hi - lo)
        if need <= 0:
            return lo, hi
        lo = max(0, lo - need // 2)
        hi = min(limit, lo + min(min_size, limit))
        lo = hi - min(min_size, limit)
        return lo, hi

    x0, x1 = widen(roi.x0, roi.x1, frame_width)
    y0, y1 = widen(roi.y0, roi.y1, frame_height)
    return Roi(x0, y0, x1, y1)


def crop_to_model_input(image: np.ndarray, roi: Roi, size: int = MODEL_INPUT_SIZE) -> np.ndarray:
    """Cut ``roi`` out of an RGB uint8 image and stretch it to ``size`` x ``size``.

    Pillow's bilinear resize is used on purpose: the authors trained and evaluated with
    it, and for down-scaling it filters over the whole source footprint (OpenCV's
    INTER_LINEAR samples only four pixels and aliases). Returns uint8 RGB.
    """
    from PIL import Image

    patch = np.ascontiguousarray(image[roi.y0 : roi.y1, roi.x0 : roi.x1, :3])
    return np.asarray(Image.fromarray(patch).resize((size, size), Image.BILINEAR))


def crop_mask_to_model_input(mask: np.ndarray, roi: Roi, size: int = MODEL_INPUT_SIZE) -> np.ndarray:
    """The ground-truth counterpart of :func:`crop_to_model_input` (nearest, as the authors)."""
    from PIL import Image

    patch = np.ascontiguousarray(mask[roi.y0 : roi.y1, roi.x0 : roi.x1]).astype(np.uint8)
    return np.asarray(Image.fromarray(patch).resize((size, size), Image.NEAREST)) > 0


def crop_logits_to_model_input(logits: np.ndarray, roi: Roi, size: int = MODEL_INPUT_SIZE) -> np.ndarray:
    """Cut ``roi`` out of full-frame float logits (a teacher's) and resize to ``size`` x ``size``.

    Shrinking averages over the source footprint (INTER_AREA), like the bilinear image crop
    in Pillow does, so thin structures are not aliased away; enlarging is bilinear.
    """
    import cv2

    patch = np.ascontiguousarray(logits[roi.y0 : roi.y1, roi.x0 : roi.x1], dtype=np.float32)
    shrinking = patch.shape[0] >= size and patch.shape[1] >= size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def jitter_box(box_xywh: Sequence[float], fraction: float, rng: np.random.Generator) -> Tuple[float, float, float, float]:
    """Move each edge of a box by up to ``fraction`` of the box's width / height.

    Models a sloppy prompt (a box drawn by hand on a live preview). The result keeps a
    positive size; clipping to the frame is left to :func:`roi_from_box`.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    if fraction <= 0:
        return (x, y, w, h)
    dx0, dx1 = rng.uniform(-fraction, fraction, 2) * w
    dy0, dy1 = rng.uniform(-fraction, fraction, 2) * h
    x0, x1 = x + dx0, x + w + dx1
    y0, y1 = y + dy0, y + h + dy1
    x1, y1 = max(x1, x0 + 1.0), max(y1, y0 + 1.0)
    return (x0, y0, x1 - x0, y1 - y0)


def to_model_range(rgb_uint8: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 in [0, 1), the scale the IMX500 feeds the network (1/256)."""
    return rgb_uint8.astype(np.float32) / 256.0


def paste_logits(logits: np.ndarray, roi: Roi, frame_height: int, frame_width: int) -> np.ndarray:
    """Paste 96x96 logits back into the frame as a boolean mask (``logit > 0``).

    The logits are resized bilinearly to the ROI's size before thresholding, which keeps
    edges smooth; everything outside the ROI is background.
    """
    mask = np.zeros((frame_height, frame_width), dtype=bool)
    mask[roi.y0 : roi.y1, roi.x0 : roi.x1] = logits_to_roi_mask(logits, roi)
    return mask


def logits_to_roi_mask(logits: np.ndarray, roi: Roi) -> np.ndarray:
    """The part of :func:`paste_logits`' mask inside ``roi``, shape ``(roi.height, roi.width)``.

    Evaluation compares masks inside the ROI only (everything outside is background), which
    spares it a full-frame array per prompt.
    """
    import cv2

    logits = np.asarray(logits, dtype=np.float32).reshape(logits.shape[0], logits.shape[1])
    return cv2.resize(logits, (roi.width, roi.height), interpolation=cv2.INTER_LINEAR) > 0
