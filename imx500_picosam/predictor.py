"""Still-image inference: image + box prompt -> mask at the image's size.

The same path the camera takes, on the CPU: the box becomes an ROI by the shared geometry
rule (the checkpoint's ``roi_rule``), the ROI is stretched to 96x96, an engine (which scales it like the sensor's input,
1/256) returns 96x96 logits, and the mask is pasted back into the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .firmware.engines import load_engine
from .geometry import LEGACY_ROI_RULE, Roi, check_rule, crop_to_model_input, paste_logits, roi_from_box


@dataclass(frozen=True)
class Segmentation:
    roi: Roi
    logits: np.ndarray  # (96, 96) float32, the model's raw output for the ROI crop
    mask: np.ndarray  # (H, W) bool, pasted back into the frame


class Predictor:
    """Still-image inference with any :mod:`~imx500_picosam.firmware.engines` engine."""

    def __init__(self, engine, roi_rule: str = LEGACY_ROI_RULE):
        """``roi_rule`` is the engine's model's (a bare engine: the authors' ``square``)."""
        self.engine = engine
        self.roi_rule = check_rule(roi_rule)

    @classmethod
    def from_checkpoint(cls, checkpoint, quantized: bool = False, log=None) -> "Predictor":
        """The float model, or (``quantized``) the network ``make rpk`` builds from it, with the
        checkpoint's ROI rule."""
        return cls(load_engine(checkpoint, "quantized" if quantized else "float", log=log), checkpoint.roi_rule)

    def segment(self, image_rgb: np.ndarray, box_xywh: Sequence[float]) -> Segmentation:
        height, width = image_rgb.shape[:2]
        roi = roi_from_box(box_xywh, width, height, rule=self.roi_rule)
        logits = self.engine.predict_crops(crop_to_model_input(image_rgb, roi)[None])[0]
        return Segmentation(roi=roi, logits=logits, mask=paste_logits(logits, roi, height, width))
