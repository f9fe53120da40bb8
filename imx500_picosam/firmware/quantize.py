"""Stage: Keras float model -> MCT-quantized model for the IMX500, exported for imxconv-tf.

The target platform comes from ``edge-mdt-tpc``. Its version must be one the installed
converter understands; see :data:`imx500_picosam.toolchain.TPC_FOR_CONVERTER` and
docs/toolchain.md.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np

from ..atomic import atomic_path, write_json
from ..calibration import CalibrationSource, crops_fingerprint, load_crops
from ..model.checkpoint import load_model
from ..errors import PicosamError
from ..hashing import sha256_json
from ..toolchain import (
    DEFAULT_TPC_VERSION,
    converter_tpc_version,
    installed_version,
    quantization_versions,
    user_cache_dir,
)

CALIBRATION_BATCH = 16


@dataclass(frozen=True)
class QuantizationResult:
    model_path: Path  # MCT-exported .keras model for imxconv-tf
    method: str  # "ptq" or "gptq"
    gptq_epochs: Optional[int]
    tpc_version: str
    mct_version: str
    tpc_package_version: str
    calibration_crops: int
    seconds: float


def _representative_data(images: np.ndarray) -> Callable[[], Iterator[List[np.ndarray]]]:
    def generator() -> Iterator[List[np.ndarray]]:
        for start in range(0, len(images), CALIBRATION_BATCH):
            yield [images[start : start + CALIBRATION_BATCH]]

    return generator


def quantize_model(
    float_model,
    calibration_images: np.ndarray,
    tpc_version: str = DEFAULT_TPC_VERSION,
    gptq: bool = False,
    gptq_epochs: int = 5,
):
    """Quantize with MCT; returns MCT's quantized Keras model (fake-quant, runs on CPU)."""
    import model_compression_toolkit as mct
    from edgemdt_tpc import get_target_platform_capabilities

    tpc = get_target_platform_capabilities(tpc_version=tpc_version, device_type="imx500")
    data = _representative_data(calibration_images)
    if gptq:
        # MCT's Hessian-weighted GPTQ costs ~25 s per Hessian iteration (100 of them) for
        # PicoSAM3 on a 2-core CPU; without it 5 epochs take ~50 s.
        config = mct.gptq.get_keras_gptq_config(
            n_epochs=gptq_epochs, use_hessian_based_weights=False, use_hessian_sample_attention=False
        )
        quantized, _ = mct.gptq.keras_gradient_post_training_quantization(
            float_model, data, gptq_config=config, target_platform_capabilities=tpc
        )
    else:
        quantized, _ = mct.ptq.keras_post_training_quantization(
            float_model, data, target_platform_capabilities=tpc
        )
    return quantized


def export_quantized(quantized_model, model_path: Path) -> None:
    """Export MCT's model in the form imxconv-tf reads, atomically."""
    import model_compression_toolkit as mct

    with atomic_path(model_path, suffix=".keras") as tmp:
        mct.exporter.keras_export_model(model=quantized_model, save_model_path=str(tmp))


def export_int8_tflite(quantized_model, tflite_path: Path) -> Path:
    """MCT's INT8 TFLite export of an MCT-quantized model, atomically.

    Weights and activations become int8 tensors with MCT's own thresholds, so a plain
    ``tf.lite.Interpreter`` runs the quantized network as integers on any CPU (the
    emulator's default engine, see docs/runtime.md for its agreement with MCT's model).
    The converter's MLIR statistics, which it prints straight to file descriptor 2, are
    kept out of the terminal and shown only if the export fails.
    """
    import model_compression_toolkit as mct
    from model_compression_toolkit.exporter import KerasExportSerializationFormat, QuantizationFormat

    tflite_path = Path(tflite_path)
    with atomic_path(tflite_path, suffix=".tflite") as tmp, _stderr_kept_aside() as log:
        try:
            with warnings.catch_warnings():
                # TF's converter notes that the float input has no quantization statistics:
                # by design, the exported model takes the same float input as MCT's.
                warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
                mct.exporter.keras_export_model(
                    model=quantized_model,
                    save_model_path=str(tmp),
                    serialization_format=KerasExportSerializationFormat.TFLITE,
                    quantization_format=QuantizationFormat.INT8,
                )
        except Exception as err:  # the converter raises assorted types; the message matters
            lines = str(err).strip().splitlines() or log.read_text(errors="replace").strip().splitlines()
            reason = lines[0] if lines else err.__class__.__name__
            raise PicosamError(f"{tflite_path}: INT8 TFLite export failed: {reason}") from None
    return tflite_path


@contextlib.contextmanager
def _stderr_kept_aside() -> Iterator[Path]:
    """Point file descriptor 2 at a temporary file for the duration (C++ code writes there)."""
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.NamedTemporaryFile(prefix="picosam-tflite-", suffix=".log", delete=False) as handle:
        log = Path(handle.name)
        os.dup2(handle.fileno(), 2)
    try:
        yield log
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        log.unlink(missing_ok=True)


@dataclass(frozen=True)
class QuantizationSettings:
    """How ``make rpk`` quantizes; ``tpc_version`` None means the TPC matching the installed converter."""

    tpc_version: Optional[str] = None
    gptq: bool = False
    gptq_epochs: int = 5
    calibration: Optional[CalibrationSource] = None  # None: the bundled photos

    def calibration_crops(self, rule: str):
        """The crops MCT calibrates on, cut with ROI rule ``rule`` (the checkpoint's)."""
        return self.calibration.load(rule) if self.calibration else load_crops("calibration", rule=rule)

    def calibration_fingerprint(self, rule: str) -> str:
        if self.calibration:
            return self.calibration.fingerprint(rule)
        return crops_fingerprint("calibration", rule=rule)

    def resolved(self) -> "QuantizationSettings":
        return replace(self, tpc_version=self.tpc_version or converter_tpc_version())


@dataclass(frozen=True)
class QuantizedModel:
    model: Any  # MCT's quantized Keras model (fake-quant ops, runs on any CPU)
    result: QuantizationResult  # result.model_path: MCT's export of it, the file imxconv-tf reads
    from_cache: bool  # loaded from the cache rather than quantized in this call


def quantized_as_built(checkpoint, settings: QuantizationSettings = QuantizationSettings(), float_model=None,
                       log: Optional[Callable[[str], None]] = None) -> QuantizedModel:
    """``checkpoint`` quantized exactly as ``make rpk`` quantizes it, from the cache when possible.

    The one place that knows how the firmware's network is made: the calibration crops of
    :func:`~imx500_picosam.calibration.load_crops`, the TPC matching the converter, MCT's
    PTQ (or GPTQ). ``picosam build``, ``segment --quantized``, ``demo --emulate`` and
    ``evaluate`` all call it, so what they run is what the sensor runs. MCT's export is
    cached under :func:`~imx500_picosam.toolchain.user_cache_dir` keyed by the weights'
    sha256, the settings, the toolchain versions and the calibration photos; loading it back
    gives the same logits bit for bit (measured; docs/layout.md) in ~1 s instead of ~20 s.
    """
    say = log or (lambda line: None)
    settings = settings.resolved()
    path = _cache_path(checkpoint, settings, ".keras")
    facts_path = path.with_suffix(".json")
    if path.is_file() and facts_path.is_file():  # the facts are written last: both there means whole
        try:
            model = _load_export(path)
            facts = json.loads(facts_path.read_text())["result"]
            say(f"quantized model: {path} (cached, {checkpoint.describe()})")
            return QuantizedModel(model, QuantizationResult(**{**facts, "model_path": path}), from_cache=True)
        except Exception as err:  # a damaged cache entry is made again, never trusted
            say(f"{path}: unreadable cached model ({err.__class__.__name__}); quantizing again")
    say(f"quantizing {checkpoint.describe()} with MCT as `make rpk` does (TPC {settings.tpc_version}, "
        f"{'GPTQ' if settings.gptq else 'PTQ'}, calibrated on "
        f"{settings.calibration.label if settings.calibration else 'the bundled photos'}; about 20 s for PTQ) ...")
    float_model = float_model if float_model is not None else load_model(checkpoint)
    images = settings.calibration_crops(checkpoint.roi_rule).images
    started = time.perf_counter()
    model = quantize_model(float_model, images, tpc_version=settings.tpc_version, gptq=settings.gptq,
                           gptq_epochs=settings.gptq_epochs)
    export_quantized(model, path)
    result = QuantizationResult(
        model_path=path,
        method="gptq" if settings.gptq else "ptq",
        gptq_epochs=settings.gptq_epochs if settings.gptq else None,
        tpc_version=settings.tpc_version,
        mct_version=installed_version("model-compression-toolkit"),
        tpc_package_version=installed_version("edge-mdt-tpc"),
        calibration_crops=int(len(images)),
        seconds=time.perf_counter() - started,
    )
    write_json(facts_path, {"key": _cache_facts(checkpoint, settings), "result": {**asdict(result), "model_path": str(path)}})
    return QuantizedModel(model, result, from_cache=False)


def int8_tflite_as_built(checkpoint, settings: QuantizationSettings = QuantizationSettings(),
                         log: Optional[Callable[[str], None]] = None) -> Path:
    """MCT's INT8 TFLite export of :func:`quantized_as_built`'s model, cached beside it."""
    say = log or (lambda line: None)
    settings = settings.resolved()
    path = _cache_path(checkpoint, settings, ".tflite")
    if path.is_file():
        say(f"INT8 TFLite model: {path} (cached INT8 export of {checkpoint.describe()})")
        return path
    quantized = quantized_as_built(checkpoint, settings, log=log)
    say(f"exporting the INT8 TFLite model to {path} ...")
    return export_int8_tflite(quantized.model, path)


def _cache_facts(checkpoint, settings: QuantizationSettings) -> Dict[str, Any]:
    """Everything that changes the quantized network for the same weights file."""
    return {
        "weights_sha256": checkpoint.weights_sha256,
        "architecture": checkpoint.architecture,
        "input_normalisation": checkpoint.input_normalisation,
        "tpc_version": settings.tpc_version,
        "method": "gptq" if settings.gptq else "ptq",
        "gptq_epochs": settings.gptq_epochs if settings.gptq else None,
        "versions": quantization_versions(),
        "calibration": settings.calibration_fingerprint(checkpoint.roi_rule),
    }


def _cache_path(checkpoint, settings: QuantizationSettings, suffix: str) -> Path:
    key = sha256_json(_cache_facts(checkpoint, settings))
    return user_cache_dir() / "quantized" / f"{checkpoint.architecture}-{key[:16]}{suffix}"


def _load_export(path: Path):
    """MCT's export read back as a runnable Keras model (its quantizers are custom layers)."""
    from mct_quantizers import keras_load_quantized_model

    return keras_load_quantized_model(str(path), compile=False)
