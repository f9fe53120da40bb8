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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import numpy as np

from .atomic import atomic_path
from .errors import PicosamError
from .toolchain import DEFAULT_TPC_VERSION, installed_version

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


def quantize_and_export(
    float_model,
    calibration_images: np.ndarray,
    model_path: Path,
    tpc_version: str = DEFAULT_TPC_VERSION,
    gptq: bool = False,
    gptq_epochs: int = 5,
):
    """Quantize and export; returns (quantized model, :class:`QuantizationResult`)."""
    started = time.perf_counter()
    quantized = quantize_model(
        float_model, calibration_images, tpc_version=tpc_version, gptq=gptq, gptq_epochs=gptq_epochs
    )
    export_quantized(quantized, Path(model_path))
    result = QuantizationResult(
        model_path=Path(model_path),
        method="gptq" if gptq else "ptq",
        gptq_epochs=gptq_epochs if gptq else None,
        tpc_version=tpc_version,
        mct_version=installed_version("model-compression-toolkit"),
        tpc_package_version=installed_version("edge-mdt-tpc"),
        calibration_crops=int(len(calibration_images)),
        seconds=time.perf_counter() - started,
    )
    return quantized, result

