"""Import the authors' PyTorch PicoSAM3 / PicoSAM2 state dicts into the Keras model.

The Keras layers are named after the PyTorch modules (``.`` -> ``_``, see
:mod:`imx500_picosam.model.network`), so the import is a strict name lookup: every tensor of the
file must be used exactly once, every layer of the model must be filled, and every shape
must match; anything else is one :class:`~imx500_picosam.errors.PicosamError` line that
lists what is missing, unexpected or mis-shaped. The ``.pt`` file itself is read by
:mod:`imx500_picosam.model.torch_file`, without PyTorch and without executing anything in it.

Layout conversions (PyTorch -> Keras):

* ``Conv2d`` weight ``(out, in, kh, kw)`` -> ``Conv2D`` kernel ``(kh, kw, in, out)``;
* depthwise ``Conv2d`` weight ``(C, 1, kh, kw)`` -> ``DepthwiseConv2D`` kernel ``(kh, kw, C, 1)``;
* ``BatchNorm2d`` weight / bias / running_mean / running_var -> gamma / beta /
  moving_mean / moving_variance (``num_batches_tracked`` only drives PyTorch's momentum
  schedule in training and has no Keras counterpart, so it is expected and skipped).

Input normalisation
-------------------
The authors feed ``(x_a - mean) / std`` with ImageNet mean/std and ``x_a = uint8 / 255``
(torchvision ``ToTensor``); the IMX500 feeds ``x = uint8 / 256``. An imported model
therefore starts with the layer ``input_normalisation`` (a 1x1 depthwise convolution
with bias, a converter-accepted layer type, 6 parameters) computing
``(x * 256/255 - mean) / std`` per channel, so that for the same uint8 photo it sees
exactly the numbers the authors' model saw.

Why a layer and not a fold into ``encoder_stage1``: folding scale and shift into the
first depthwise kernel and BatchNorm is exact except at the image border, where PyTorch
zero-pads the *normalised* image (a raw value equal to the mean) while a folded model
zero-pads the raw image. That offset depends on the position and no layer of the fixed
graph can cancel it; measured with random weights it reached 0.0083 (PicoSAM3) and 0.107
(PicoSAM2) in |logit| on real photos. With the layer, padding happens after
normalisation as in PyTorch and the import is exact to float rounding; the importer
measures it anyway (the Keras model against the same weights without the layer, fed the
authors' normalised input, on the held-out real-photo crops) and records it in the
sidecar as ``input_normalisation_max_abs_logit_error``.

``uint8_255_vs_256_max_abs_logit_difference`` records what feeding ``/256`` instead of
the authors' ``/255`` would change (1e-4 to 1e-3 on random weights).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from . import torch_file
from .checkpoint import WEIGHTS_SUFFIX, Checkpoint, Provenance, save_checkpoint
from ..errors import PicosamError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float64)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float64)
# The authors' input is uint8 / 255, the sensor's is uint8 / 256: x_authors = x * 256/255.
AUTHORS_PER_SENSOR_SCALE = 256.0 / 255.0


# Top-level PyTorch modules; the Keras layer name starts with one of them (``.`` -> ``_``).
_MODULE_ROOTS = (
    "encoder_stage1", "encoder_stage2", "encoder_stage3", "encoder_stage4",
    "down1", "down2", "down3", "down4",
    "bottleneck",
    "up1", "up2", "up3", "up4",
    "skip_conn1", "skip_conn2", "skip_conn3", "skip_conn4",
    "eca", "refine", "output_head",
)
# Keras weight order per layer class, and the PyTorch parameter each one comes from.
_PARAMETERS = {
    "Conv2D": ("weight", "bias"),
    "DepthwiseConv2D": ("weight",),
    "BatchNormalization": ("weight", "bias", "running_mean", "running_var"),
}
_LIST_LIMIT = 5


def _listing(items: List[str]) -> str:
    """Short one-line list: the first few items and how many more there are."""
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f" (+{len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")


# --------------------------------------------------------------------------- reading


# Where training scripts commonly put the model's weights in a larger checkpoint dict.
STATE_DICT_WRAPPERS = ("state_dict", "model_state_dict", "model")


def load_state_dict(path: Path) -> Dict[str, np.ndarray]:
    """Read a PyTorch checkpoint as ``{key: array}``, floats as float32 (no torch needed).

    A bare state dict, or one wrapped in a training checkpoint under one of
    :data:`STATE_DICT_WRAPPERS`, is accepted; DataParallel's ``module.`` prefix is dropped.
    """
    path = Path(path)
    loaded = torch_file.load(path)
    if isinstance(loaded, Mapping):
        for wrapper in STATE_DICT_WRAPPERS:
            if isinstance(loaded.get(wrapper), Mapping):
                loaded = loaded[wrapper]
                break
    if not isinstance(loaded, Mapping) or not loaded:
        raise PicosamError(f"{path}: holds no state dict (found {type(loaded).__name__})")
    state: Dict[str, np.ndarray] = {}
    for key, value in loaded.items():
        if not isinstance(key, str):
            raise PicosamError(f"{path}: state dict key {key!r} is not a string")
        if not isinstance(value, np.ndarray):
            raise PicosamError(f"{path}: entry '{key}' is a {type(value).__name__}, not a tensor")
        # DataParallel / DistributedDataParallel save every key under "module.".
        name = key[len("module."):] if key.startswith("module.") else key
        state[name] = value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value
    return state


def detect_architecture(state: Mapping[str, Any]) -> str:
    """``picosam3`` (channel gate + refine head) or ``picosam2`` (plain output head), by keys."""
    roots = sorted({key.split(".", 1)[0] for key in state})
    if "eca" in roots or "refine" in roots:
        return "picosam3"
    if "output_head" in roots:
        return "picosam2"
    raise PicosamError(
        "state dict is neither PicoSAM3 (eca.*/refine.*) nor PicoSAM2 (output_head.*); "
        f"its top-level modules are: {_listing(roots) or 'none'}"
    )


# --------------------------------------------------------------------------- mapping


def torch_module_path(keras_layer_name: str) -> str:
    """``bottleneck_0_3`` -> ``bottleneck.0.3``, ``eca_conv1x1`` -> ``eca.conv1x1``."""
    root = max((r for r in _MODULE_ROOTS if keras_layer_name == r or keras_layer_name.startswith(r + "_")),
               key=len, default=None)
    if root is None:
        raise ValueError(f"Keras layer '{keras_layer_name}' has no PyTorch module root")
    rest = keras_layer_name[len(root) + 1:]
    return root + ("." + rest.replace("_", ".") if rest else "")


def _torch_shape(layer_kind: str, parameter: str, keras_shape: Tuple[int, ...]) -> Tuple[int, ...]:
    if parameter == "weight" and layer_kind == "Conv2D":
        kh, kw, cin, cout = keras_shape
        return (cout, cin, kh, kw)
    if parameter == "weight" and layer_kind == "DepthwiseConv2D":
        kh, kw, c, multiplier = keras_shape
        return (c * multiplier, 1, kh, kw)
    return tuple(keras_shape)


def _to_keras(layer_kind: str, parameter: str, array: np.ndarray) -> np.ndarray:
    if parameter == "weight" and layer_kind == "Conv2D":
        return np.transpose(array, (2, 3, 1, 0))  # OIHW -> HWIO
    if parameter == "weight" and layer_kind == "DepthwiseConv2D":
        return np.transpose(array, (2, 3, 0, 1))  # (C,1,H,W) -> (H,W,C,1)
    return array


@lru_cache(maxsize=None)
def expected_state_dict(architecture: str) -> Tuple[Tuple[str, str, str, Tuple[int, ...]], ...]:
    """``(keras layer, layer class, torch key, torch shape)`` for every weight of the model."""
    from .network import build_model

    model = build_model(architecture)
    rows = []
    for layer in model.layers:
        kind = type(layer).__name__
        if not layer.weights:
            continue
        parameters = _PARAMETERS[kind][: len(layer.weights)]
        module = torch_module_path(layer.name)
        for parameter, weight in zip(parameters, layer.weights):
            shape = _torch_shape(kind, parameter, tuple(int(d) for d in weight.shape))
            rows.append((layer.name, kind, f"{module}.{parameter}", shape))
    return tuple(rows)


def map_state_dict(state: Mapping[str, np.ndarray], architecture: str) -> Dict[str, List[np.ndarray]]:
    """Keras weights per layer name, in PyTorch units (input normalisation not included).

    Strict: a missing key, an unused key or a wrong shape is an error, all of them
    reported in one line.
    """
    expected = expected_state_dict(architecture)
    # num_batches_tracked is PyTorch's BatchNorm step counter (it only sets the momentum
    # schedule in training) and has no Keras counterpart: expected for our BatchNorm
    # modules and skipped; under any other module name it is reported as unexpected.
    counters = {
        key.rsplit(".", 1)[0] + ".num_batches_tracked"
        for _, kind, key, _ in expected
        if kind == "BatchNormalization"
    }
    provided = {k: v for k, v in state.items() if k not in counters}
    wanted = {key for _, _, key, _ in expected}
    missing = [key for _, _, key, _ in expected if key not in provided]
    unexpected = sorted(key for key in provided if key not in wanted)
    misshaped = [
        f"{key} {tuple(provided[key].shape)} != {shape}"
        for _, _, key, shape in expected
        if key in provided and tuple(provided[key].shape) != shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {_listing(unexpected)}")
    if misshaped:
        problems.append(f"wrong shape {len(misshaped)}: {_listing(misshaped)}")
    if problems:
        raise PicosamError(f"state dict does not match {architecture}: " + "; ".join(problems))
    weights: Dict[str, List[np.ndarray]] = {}
    for layer_name, kind, key, _ in expected:
        parameter = key.rsplit(".", 1)[1]
        weights.setdefault(layer_name, []).append(
            np.ascontiguousarray(_to_keras(kind, parameter, provided[key]), dtype=np.float32)
        )
    return weights


# --------------------------------------------------------------------------- input normalisation


def input_normalisation_weights() -> List[np.ndarray]:
    """Kernel and bias of the ``input_normalisation`` layer: ``(x * 256/255 - mean) / std``."""
    kernel = (AUTHORS_PER_SENSOR_SCALE / IMAGENET_STD).reshape(1, 1, 3, 1)
    bias = -IMAGENET_MEAN / IMAGENET_STD
    return [kernel.astype(np.float32), bias.astype(np.float32)]


def _model_with(architecture: str, weights: Dict[str, List[np.ndarray]], input_normalisation: bool = False):
    from .network import INPUT_NORMALISATION_LAYER, build_model

    model = build_model(architecture, input_normalisation=input_normalisation)
    for name, values in weights.items():
        model.get_layer(name).set_weights(values)
    if input_normalisation:
        model.get_layer(INPUT_NORMALISATION_LAYER).set_weights(input_normalisation_weights())
    return model


def authors_normalise(sensor_images: np.ndarray) -> np.ndarray:
    """The authors' input for sensor-range images (uint8/256): ``(uint8/255 - mean) / std``."""
    x = sensor_images.astype(np.float64) * AUTHORS_PER_SENSOR_SCALE
    return ((x - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def _logits(model, images: np.ndarray) -> np.ndarray:
    # Direct calls instead of predict(): predict traces a new tf.function per model and
    # TensorFlow warns about retracing when several models are compared.
    return np.concatenate([model(images[i:i + 16], training=False).numpy() for i in range(0, len(images), 16)])


def measure_import(architecture: str, weights: Dict[str, List[np.ndarray]], imported_model, images: np.ndarray):
    """Max |Δ logit| on ``images`` (sensor range): ``(imported model vs the same weights fed
    the authors' normalised input, /255 vs /256 input scale)``."""
    reference = _model_with(architecture, weights)
    imported = _logits(imported_model, images)
    difference = np.abs(imported - _logits(reference, authors_normalise(images)))
    # Feeding x * 255/256 through the /255 map is what a /256 map would compute on x.
    scale_difference = np.abs(_logits(imported_model, images / AUTHORS_PER_SENSOR_SCALE) - imported)
    return float(difference.max()), float(scale_difference.max())


# --------------------------------------------------------------------------- import


def import_checkpoint(pt_path: Path, out_dir: Path, arch: str = "auto") -> Checkpoint:
    """Import ``pt_path`` into ``out_dir/<stem>.weights.h5`` + sidecar (provenance ``imported``)."""
    from ..calibration import load_crops
    from ..geometry import LEGACY_ROI_RULE
    from ..hashing import sha256_of
    from .network import ARCHITECTURES

    pt_path = Path(pt_path)
    if arch != "auto" and arch not in ARCHITECTURES:
        raise PicosamError(f"unknown architecture '{arch}', expected auto or one of {ARCHITECTURES}")
    state = load_state_dict(pt_path)
    try:
        detected = detect_architecture(state)
    except PicosamError as err:
        raise PicosamError(f"{pt_path}: {err}") from None
    if arch != "auto" and arch != detected:
        raise PicosamError(
            f"{pt_path}: --arch {arch} requested but the state dict holds {detected} "
            f"({'eca/refine' if detected == 'picosam3' else 'output_head'} keys)"
        )
    name_mismatch_note: Optional[str] = None
    lower_name = pt_path.name.lower()
    named = [a for a in ARCHITECTURES if a in lower_name]
    if named and detected not in named:
        name_mismatch_note = (
            f"file name '{pt_path.name}' says {named[0]} but its keys are {detected}'s; "
            f"imported as {detected} (the authors' PicoSAM3_*_epoch1.pt files hold PicoSAM2)"
        )
    try:
        weights = map_state_dict(state, detected)
    except PicosamError as err:
        raise PicosamError(f"{pt_path}: {err}") from None

    model = _model_with(detected, weights, input_normalisation=True)
    import_error, scale_difference = measure_import(detected, weights, model, load_crops("held_out", rule=LEGACY_ROI_RULE).images)

    stem = pt_path.name[: -len(pt_path.suffix)] if pt_path.suffix else pt_path.name
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    details = {
        "source_file": pt_path.name,
        "source_sha256": sha256_of(pt_path),
        "architecture_detected": detected,
        "architecture_requested": arch,
        "name_mismatch_note": name_mismatch_note,
        "input_normalisation": "layer input_normalisation computes (x * 256/255 - mean) / std, ImageNet mean/std",
        "input_normalisation_max_abs_logit_error": import_error,
        "input_normalisation_error_measured_on": "held-out calibration crops: imported model vs the same weights "
        "without the layer fed (uint8/255 - mean)/std",
        "uint8_255_vs_256_max_abs_logit_difference": scale_difference,
    }
    return save_checkpoint(model, out_dir / f"{stem}{WEIGHTS_SUFFIX}", Provenance(kind="imported", details=details))

