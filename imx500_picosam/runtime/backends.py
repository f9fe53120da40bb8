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


def camera_backend(rpk_path: Path, roi_rule: Optional[str] = None, fps: Optional[float] = None,
                   log: Callable[[str], None] = lambda line: None) -> Tuple[object, Dict[str, object], None]:
    """The Raspberry Pi AI Camera running ``rpk_path`` (checked to be a PicoSAM network), with the
    ROI rule its network_intrinsics stand for unless ``roi_rule`` overrides it, at ``fps`` frames
    per second (default: the RPK's inference rate). A ``packerOut.zip`` is packaged first, as
    modlib does (:func:`packaged_rpk`)."""
    from firmware_packaging.files import file_kind

    from .imx500 import IMX500Backend

    packaged: Dict[str, object] = {}
    if file_kind(rpk_path) == "packerOut":
        packer_out = Path(rpk_path)
        rpk_path, packaged = packaged_rpk(packer_out, roi_rule, fps, log)
        roi_rule = None  # the packaged RPK carries the rule in its network_intrinsics
    backend = IMX500Backend(rpk_path, roi_rule=roi_rule, frame_rate=fps)
    return backend, {"backend": "imx500", "rpk": str(rpk_path), **packaged, "settle_frames": backend.settle_frames,
                     "roi_rule": backend.roi_rule, "roi_rule_source": backend.roi_rule_source,
                     "fps": fps}, None


def packaged_rpk(packer_out: Path, roi_rule: Optional[str], fps: Optional[float],
                 log: Callable[[str], None]) -> Tuple[Path, Dict[str, object]]:
    """``packer_out`` packaged into a ``network.rpk`` with ``imx500-package``, in the cache
    (``$PICOSAM_CACHE_DIR/packaged/``, keyed by the file's sha256, the ROI rule and the rate), so
    nothing of the user's is written and a second start reuses it. The rule is ``roi_rule``, else
    the one the ``build_report.json`` beside it records; where neither is known, or the packager
    is missing (it ships only in Raspberry Pi OS), one line says what to do."""
    import shutil

    from ..firmware.package import PACKAGER, RPK_NAME, package_rpk, roi_rule_of_report
    from ..hashing import sha256_of
    from ..toolchain import user_cache_dir
    from .imx500 import DEFAULT_FRAME_RATE

    report = packer_out.parent / "build_report.json"
    rule = roi_rule or roi_rule_of_report(report)
    if rule is None:
        raise PicosamError(f"{packer_out}: a packerOut.zip without {report.name} beside it: say which ROI rule it "
                           "was built for with --roi-rule warp|square, or give --rpk a network.rpk")
    rate = float(fps or DEFAULT_FRAME_RATE)  # the inference rate written into network_intrinsics
    folder = user_cache_dir() / "packaged" / f"{sha256_of(packer_out)[:16]}-{rule}-{rate:g}fps"
    facts = {"packaged_from": str(packer_out), "packaging_roi_rule": rule,
             "packaging_roi_rule_source": "--roi-rule" if roi_rule else str(report)}
    if (folder / RPK_NAME).is_file():
        log(f"{packer_out}: using {folder / RPK_NAME}, packaged earlier (ROI rule {rule}, {rate:g} fps)")
        return folder / RPK_NAME, facts
    if shutil.which(PACKAGER) is None:
        raise PicosamError(f"{packer_out}: a packerOut.zip must be packaged into an RPK first, and {PACKAGER} is not "
                           "on this machine: on Raspberry Pi OS run `sudo apt install imx500-tools` and retry, or "
                           "give --rpk a network.rpk (`picosam package` makes one on a Pi)")
    log(f"{packer_out}: a packerOut.zip; packaging it with {PACKAGER} into {folder / RPK_NAME} "
        f"(ROI rule {rule} from {facts['packaging_roi_rule_source']}, {rate:g} fps) ...")
    result = package_rpk(packer_out, folder, rate, rule)
    return result.rpk, facts
