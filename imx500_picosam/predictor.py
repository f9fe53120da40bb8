"""Still-image inference: image + box prompt -> mask at the image's size.

The same path the camera takes, on the CPU: the box becomes an ROI by the shared geometry
rule, the ROI is stretched to 96x96 and scaled like the sensor's input (1/256), the model
returns 96x96 logits, and the mask is pasted back into the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .geometry import Roi, crop_to_model_input, paste_logits, roi_from_box, to_model_range


@dataclass(frozen=True)
class Segmentation:
    roi: Roi
    logits: np.ndarray  # (96, 96) float32, the model's raw output for the ROI crop
    mask: np.ndarray  # (H, W) bool, pasted back into the frame


class Predictor:
    """Wraps a float or MCT-quantized Keras model."""

    def __init__(self, model, quantized: bool = False):
        self.model = model
        self.quantized = quantized

    @classmethod
    def from_checkpoint(cls, checkpoint_path: Path, quantized: bool = False) -> "Predictor":
        from .checkpoint import load_model, read_checkpoint

        model = load_model(read_checkpoint(Path(checkpoint_path)))
        if quantized:
            # The exact quantization `make rpk` applies: same calibration crops, same TPC.
            from .calibration import load_crops
            from .quantize import quantize_model
            from .toolchain import installed_version, tpc_version_for_converter

            tpc = tpc_version_for_converter(installed_version("imx500-converter"))
            model = quantize_model(model, load_crops("calibration").images, tpc_version=tpc)
        return cls(model, quantized=quantized)

    def segment(self, image_rgb: np.ndarray, box_xywh: Sequence[float]) -> Segmentation:
        height, width = image_rgb.shape[:2]
        roi = roi_from_box(box_xywh, width, height)
        crop = to_model_range(crop_to_model_input(image_rgb, roi))[None]
        logits = np.asarray(self.model(crop, training=False))[0, :, :, 0].astype(np.float32)
        return Segmentation(roi=roi, logits=logits, mask=paste_logits(logits, roi, height, width))
