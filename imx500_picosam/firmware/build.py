"""``make rpk``: checkpoint -> quantize -> convert -> package, with a build report.

Each stage is its own module and hands the next one files and small dataclasses; this
module only sequences them, times them and writes ``build/build_report.json``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np

from ..atomic import atomic_path, write_json
from ..calibration import CalibrationSource
from ..errors import PicosamError
from ..metrics import mask_iou
from ..model.resolve import UNTRAINED_WARNING, is_untrained, resolve_checkpoint

AGREEMENT_RULE = (
    "mean over held-out calibration crops of IoU(float logits > 0, MCT-quantized logits > 0); "
    "IoU of two empty masks counts as 1"
)


@dataclass
class BuildOptions:
    checkpoint: Optional[Path]
    output_dir: Path = Path("build")
    gptq: bool = False
    gptq_epochs: int = 5
    inference_rate: float = 30.0
    tpc_version: Optional[str] = None  # None: the one matching the installed converter
    calibration: Optional[CalibrationSource] = None  # None: the bundled photos (calibration.load_crops)


@dataclass
class BuildOutcome:
    report_path: Path
    report: Dict[str, Any]
    warnings: List[str] = field(default_factory=list)


def mask_agreement(float_model, quantized_model, images: np.ndarray) -> Dict[str, Any]:
    float_masks = float_model.predict(images, batch_size=32, verbose=0) > 0
    quant_masks = quantized_model.predict(images, batch_size=32, verbose=0) > 0
    ious = [mask_iou(f, q) for f, q in zip(float_masks, quant_masks)]
    return {
        "crops": len(ious),
        "mean_iou": round(float(np.mean(ious)), 4),
        "min_iou": round(float(np.min(ious)), 4),
        "float_foreground_fraction": round(float(float_masks.mean()), 4),
        "rule": AGREEMENT_RULE,
    }


def _calibration_facts(source: Optional[CalibrationSource], crops, fingerprint: str) -> Dict[str, Any]:
    """What the report says about the calibration data: the bundled photos, or the user's own."""
    facts = {"kind": "bundled" if source is None else source.kind, "path": None if source is None else source.label,
             "crops": len(crops.images), "photos": len({photo for photo, _ in crops.sources})}
    if source is not None:
        facts["requested_crops"] = source.crops
    return {**facts, "fingerprint": fingerprint}


def _tensor_dicts(tensors) -> List[Dict[str, Any]]:
    return [asdict(t) for t in tensors]


# (key in the report's stage_seconds, what the progress line says), in the order they run.
STAGES = (
    ("load_checkpoint", "load the checkpoint"),
    ("calibration_data", "cut the calibration crops"),
    ("quantize", "quantize with MCT"),
    ("agreement", "compare float and quantized masks"),
    ("convert", "convert with imxconv-tf"),
    ("package", "package with imx500-package"),
)


class _Stages:
    """Times each stage into ``seconds`` and tells ``progress`` when it starts and ends."""

    def __init__(self, progress: Optional[Callable[[str], None]]):
        self.progress = progress or (lambda line: None)
        self.seconds: Dict[str, float] = {}
        self._titles = dict(STAGES)
        self._number = {key: k + 1 for k, (key, _) in enumerate(STAGES)}

    @contextlib.contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        tag = f"[{self._number[key]}/{len(STAGES)}] {self._titles[key]}"
        self.progress(f"{tag} ...")
        clock = time.perf_counter()
        yield
        self.seconds[key] = time.perf_counter() - clock
        self.progress(f"{tag}: done in {self.seconds[key]:.1f} s")


def build_firmware(options: BuildOptions, progress: Optional[Callable[[str], None]] = None) -> BuildOutcome:
    """Run ``make rpk``'s stages into ``options.output_dir``, holding its lock (one build per
    folder); ``progress`` (one line at a time) hears each stage start and end, with its time,
    and the converter's own output while it runs."""
    from ..lock import FolderLock

    import tensorflow  # noqa: F401  -- a missing toolchain is said (one line) before any folder is made
    with FolderLock(options.output_dir, "picosam build"):
        return _build_firmware(options, progress)


def _build_firmware(options: BuildOptions, progress: Optional[Callable[[str], None]]) -> BuildOutcome:
    from .. import calibration, toolchain
    from ..model import checkpoint, network as model
    from . import convert, package, quantize

    out = Path(options.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage = _Stages(progress)
    seconds = stage.seconds

    with stage("load_checkpoint"):
        # An imported .pt or the fallback initialisation stays inside the build folder.
        ckpt = resolve_checkpoint(options.checkpoint, work_dir=out / "checkpoint")
        float_model = checkpoint.load_model(ckpt)
        warnings = [UNTRAINED_WARNING] if is_untrained(ckpt) else []
        unsupported = model.unsupported_layers(float_model)
        if unsupported:
            raise PicosamError(f"{ckpt.weights_path}: layers the IMX500 converter refuses: {unsupported}")

    settings = quantize.QuantizationSettings(options.tpc_version, options.gptq, options.gptq_epochs,
                                             calibration=options.calibration)
    with stage("calibration_data"):
        calib = settings.calibration_crops(ckpt.roi_rule)
        if options.calibration is not None and progress:
            photos = len({source for source, _ in calib.sources})
            short = f" (it has fewer objects than the {options.calibration.crops} asked for)" \
                if len(calib.images) < options.calibration.crops else ""
            progress(f"    {len(calib.images)} crops from {photos} photos of {options.calibration.label}, "
                     f"ROI rule {ckpt.roi_rule}{short}")
        held_out = calibration.load_crops("held_out", rule=ckpt.roi_rule)

    with stage("quantize"):
        quantized = quantize.quantized_as_built(ckpt, settings, float_model=float_model, log=progress)
        quantized_model = quantized.model
        # The build folder keeps its own copy of what the converter reads.
        quantized_path = out / "quantized" / f"{ckpt.architecture}.keras"
        with atomic_path(quantized_path, suffix=".keras") as tmp:
            shutil.copyfile(quantized.result.model_path, tmp)
        quant = replace(quantized.result, model_path=quantized_path)

    with stage("agreement"):
        agreement = mask_agreement(float_model, quantized_model, held_out.images)

    converter_line = (lambda line: progress(f"    {convert.CONVERTER}: {line}")) if progress else None
    with stage("convert"):
        conversion = convert.convert(quant.model_path, out / "converter", on_line=converter_line)
        packer_out = out / "packerOut.zip"
        with atomic_path(packer_out, suffix=".zip") as tmp:
            shutil.copyfile(conversion.packer_out, tmp)

    with stage("package"):
        packaging = package.package_rpk(packer_out, out, options.inference_rate, ckpt.roi_rule)

    macs = model.count_conv_macs(float_model)
    report = {
        "report_format": 1,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": {"machine": platform.machine(), "python": platform.python_version()},
        "warnings": warnings,
        "model": {
            "architecture": ckpt.architecture,
            "parameters": model.count_parameters(float_model),
            "conv_macs": macs.total,
            "conv_mac_rule": model.MacCount.__doc__.split("Rule:", 1)[1].strip().replace("\n    ", " "),
            "input": "96x96x3 RGB in [0, 1) (sensor scale 1/256, unsigned)",
            "output": "96x96x1 logits",
            "roi_rule": ckpt.roi_rule,
        },
        "checkpoint": {
            "weights": str(ckpt.weights_path),
            "sha256": ckpt.weights_sha256,
            "provenance": asdict(ckpt.provenance),
        },
        "toolchain": {
            "tensorflow": toolchain.installed_version("tensorflow"),
            "model-compression-toolkit": quant.mct_version,
            "edge-mdt-tpc": quant.tpc_package_version,
            "tpc_version": quant.tpc_version,
            "imx500-converter": conversion.converter_version,
            "java_major": convert.java_major_version(),
        },
        "quantization": {
            "method": quant.method,
            "gptq_epochs": quant.gptq_epochs,
            "calibration_crops": quant.calibration_crops,
            "calibration_photos": sorted({source for source, _ in calib.sources}),
            "calibration_source": _calibration_facts(options.calibration, calib,
                                                     settings.calibration_fingerprint(ckpt.roi_rule)),
            "quantized_model": str(quant.model_path),
            "from_cache": quantized.from_cache,
            "quantize_seconds": round(quant.seconds, 2),
        },
        "float_vs_quantized": {
            **agreement,
            "held_out_photos": sorted({source for source, _ in held_out.sources}),
        },
        "converter": {
            "memory_usage_mb": round(conversion.memory.memory_usage_mb, 3),
            "total_on_chip_mb": round(conversion.memory.total_on_chip_mb, 3),
            "runtime_mb": round(conversion.memory.runtime_bytes / convert.MIB, 3),
            "model_mb": round(conversion.memory.model_bytes / convert.MIB, 3),
            "memory_utilization": conversion.memory.utilization,
            "fit_in_chip": conversion.memory.fit_in_chip,
            "input_tensors": _tensor_dicts(conversion.inputs),
            "output_tensors": _tensor_dicts(conversion.outputs),
            "log": str(conversion.log_path),
        },
        "artifacts": {
            "packerOut.zip": str(packer_out),
            "network.rpk": str(packaging.rpk) if packaging.rpk else None,
        },
        "packaging": {"status": packaging.status, "message": packaging.message, "intrinsics": packaging.intrinsics},
        "stage_seconds": {name: round(value, 2) for name, value in seconds.items()},
    }
    report_path = out / "build_report.json"
    write_json(report_path, report)
    return BuildOutcome(report_path=report_path, report=report, warnings=warnings)


def _calibration_origin(facts: Optional[Dict[str, Any]]) -> str:
    if not facts or facts["kind"] == "bundled":
        return ""
    return f" from {facts['path']}"


def summary_lines(report: Dict[str, Any]) -> List[str]:
    """The short summary ``make rpk`` prints."""
    conv, model_info, agree = report["converter"], report["model"], report["float_vs_quantized"]
    inputs = ", ".join("x".join(map(str, t["shape"])) for t in conv["input_tensors"])
    outputs = ", ".join("x".join(map(str, t["shape"])) for t in conv["output_tensors"])
    lines = [f"!!! {warning}" for warning in report["warnings"]]
    lines += [
        f"model        {model_info['architecture']}: {model_info['parameters']:,} parameters, "
        f"{model_info['conv_macs'] / 1e6:.1f} M conv MACs",
        f"checkpoint   {report['checkpoint']['weights']} ({report['checkpoint']['provenance']['kind']}, "
        f"ROI rule {model_info.get('roi_rule', 'square')})",
        f"quantized    MCT {report['toolchain']['model-compression-toolkit']} {report['quantization']['method'].upper()}, "
        f"TPC {report['toolchain']['tpc_version']}, {report['quantization']['calibration_crops']} calibration crops"
        + _calibration_origin(report["quantization"].get("calibration_source"))
        + (" (from the cache)" if report["quantization"].get("from_cache") else ""),
        f"agreement    float vs quantized masks: mean IoU {agree['mean_iou']:.3f} on {agree['crops']} held-out crops",
        f"converter    imxconv-tf {report['toolchain']['imx500-converter']}: {conv['memory_usage_mb']:.2f} MB of "
        f"{conv['total_on_chip_mb']:.2f} MB, fit in chip: {conv['fit_in_chip']}; input {inputs}, output {outputs}",
        f"firmware     {report['artifacts']['packerOut.zip']}"
        + (f", {report['artifacts']['network.rpk']}" if report["artifacts"]["network.rpk"] else ""),
        f"packaging    {report['packaging']['message']}",
        "seconds      " + ", ".join(f"{k} {v:.1f}" for k, v in report["stage_seconds"].items()),
    ]
    lines += [f"!!! {warning}" for warning in report["warnings"]]
    return lines
