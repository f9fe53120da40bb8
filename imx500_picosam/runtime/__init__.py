"""Camera runtime: box prompt -> sensor ROI -> PicoSAM3 -> mask in the frame.

One :class:`Session` drives either backend: :class:`IMX500Backend` (the Raspberry Pi AI
Camera through picamera2, imported only when that backend is created) or
:class:`EmulatorBackend` (image, video or webcam frames and the quantized model on a CPU).
See docs/runtime.md.

    from imx500_picosam.firmware.engines import load_engine
    from imx500_picosam.model.resolve import resolve_checkpoint
    from imx500_picosam.runtime import EmulatorBackend, Session, open_source

    checkpoint = resolve_checkpoint("my.weights.h5")
    engine = load_engine(checkpoint, "tflite")  # MCT's INT8 export, cached
    backend = EmulatorBackend(open_source("photo.jpg"), engine, roi_rule=checkpoint.roi_rule)
    with Session(backend, boxes=[(140, 40, 170, 170)]) as session:
        step = session.step()
        print(step.result.to_json())
"""

from .attribution import AttributionSettings
from .coords import IMX500_SENSOR_SIZE, StreamGeometry, sensor_rect_to_main, sensor_roi_for_box
from .decode import MaskDecoder, OverlayStyle, draw_mask, draw_roi, logits_from_outputs
from .emulator import EmulatorBackend, open_source
from .imx500 import IMX500Backend
from .session import Capture, Prompt, SegmentationResult, Session, Step
from .watchdog import WatchdogSettings

__all__ = [
    "IMX500_SENSOR_SIZE", "StreamGeometry", "sensor_rect_to_main", "sensor_roi_for_box",
    "MaskDecoder", "OverlayStyle", "draw_mask", "draw_roi", "logits_from_outputs",
    "EmulatorBackend", "open_source",
    "IMX500Backend", "Capture", "Prompt", "SegmentationResult", "Session", "Step",
    "AttributionSettings", "WatchdogSettings",
]
