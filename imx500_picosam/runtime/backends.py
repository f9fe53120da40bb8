"""Assembling ``picosam demo``'s backend: the camera with a PicoSAM ``network.rpk``, or the
emulator with a checkpoint quantized as ``make rpk`` quantizes it.

The command line only parses options; what runs, and what ``run.json`` records about it,
is decided here so that scripts get the same backend the demo does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

from ..errors import PicosamError
from ..model.resolve import UNTRAINED_WARNING, is_untrained, resolve_checkpoint

# ``picosam demo --engine``: the emulator's names for the engines' kinds.
DEMO_ENGINES = {"tflite": "tflite", "keras": "quantized"}
DEFAULT_DEMO_ENGINE = "tflite"


def parse_roi_latency(text: str) -> Union[int, Tuple[int, int]]:
    """``picosam demo --roi-latency``: ``N`` frames, or ``LOW,HIGH`` drawn per ROI change."""
    parts = [part.strip() for part in text.split(",")]
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or len(values) != len(parts) or min(values) < 0 or values[0] > values[-1]:
        raise PicosamError(f"--roi-latency {text}: expected frames N >= 0 or LOW,HIGH with 0 <= LOW <= HIGH")
    return values[0] if len(values) == 1 else (values[0], values[1])


def emulator_backend(source: str, checkpoint: Optional[Path] = None, engine: str = DEFAULT_DEMO_ENGINE,
                     loop: bool = False, log: Callable[[str], None] = print,
                     roi_latency: Union[int, Tuple[int, int]] = 0, seed: int = 0, roi_rule: Optional[str] = None):
    """Frames from ``source`` (image, video or webcam index) and the checkpoint (the front
    door's rules: default the shipped one) quantized as ``make rpk`` does. The ROI rule is the
    checkpoint's unless ``roi_rule`` overrides it.

    ``roi_latency``/``seed``: the sensor's lag in taking a new ROI, as
    :class:`~.emulator.EmulatorBackend` emulates it. Returns ``(backend, run_info, warning)``; ``warning`` is the untrained-model text or None.
    """
    from ..firmware.engines import load_engine
    from .emulator import EmulatorBackend, open_source

    if engine not in DEMO_ENGINES:
        raise PicosamError(f"engine '{engine}' is not one of {tuple(DEMO_ENGINES)}")
    frames = open_source(source, loop=loop)
    ckpt = resolve_checkpoint(checkpoint)
    untrained = is_untrained(ckpt)
    if untrained:
        log(f"!!! {UNTRAINED_WARNING}")
    rule = roi_rule or ckpt.roi_rule
    backend = EmulatorBackend(frames, load_engine(ckpt, DEMO_ENGINES[engine], log=log), roi_latency=roi_latency,
                              seed=seed, roi_rule=rule)
    run_info: Dict[str, object] = {
        "backend": "emulator", "source": source, "engine": engine, "checkpoint": str(ckpt.weights_path),
        "checkpoint_sha256": ckpt.weights_sha256, "provenance": ckpt.provenance.kind, "untrained": untrained,
        "roi_latency": list(roi_latency) if isinstance(roi_latency, tuple) else roi_latency, "seed": seed,
        "roi_rule": rule, "roi_rule_source": "override" if roi_rule else "checkpoint",
    }
    return backend, run_info, f"!!! {UNTRAINED_WARNING}" if untrained else None


def camera_backend(rpk_path: Path, roi_rule: Optional[str] = None) -> Tuple[object, Dict[str, object], None]:
    """The Raspberry Pi AI Camera running ``rpk_path`` (checked to be a PicoSAM network), with the
    ROI rule its network_intrinsics stand for unless ``roi_rule`` overrides it."""
    from .imx500 import IMX500Backend

    backend = IMX500Backend(rpk_path, roi_rule=roi_rule)
    return backend, {"backend": "imx500", "rpk": str(rpk_path), "settle_frames": backend.settle_frames,
                     "roi_rule": backend.roi_rule, "roi_rule_source": backend.roi_rule_source}, None
