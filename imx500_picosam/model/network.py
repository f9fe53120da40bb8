"""PicoSAM3 and PicoSAM2 as Keras 2 functional models that the IMX500 converter accepts.

The layers mirror the authors' PyTorch modules one for one, and each Keras layer is named
after the PyTorch module it stands for with ``.`` replaced by ``_`` (``encoder_stage1.0``
-> ``encoder_stage1_0``, ``up1.1.3`` -> ``up1_1_3``), so importing a state dict is a
name lookup. Three details keep the numerics identical to PyTorch:

* BatchNorm uses PyTorch's epsilon (1e-5) and momentum (0.1, i.e. Keras 0.9).
* PyTorch's ``padding=1`` is symmetric. Keras ``padding="same"`` pads a stride-2
  convolution of an even-sized map only at the bottom/right, shifting every feature map
  by half a pixel, so stride-2 convolutions get an explicit ``ZeroPadding2D(1)`` and
  ``padding="valid"``. Stride-1 3x3 convolutions (also dilated) pad symmetrically with
  "same" and keep it.
* The "ECA" block of the authors' code is not the 1-D-convolution ECA of the literature
  but global average pooling -> dense 1x1 convolution (40->40, no bias) -> sigmoid ->
  channel gate. We keep exactly that and call it a channel gate.

The model takes RGB in [0, 1) (what the sensor feeds, scale 1/256) and returns 96x96x1
logits. There is no normalisation layer in the graph: the converter refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import tensorflow as tf

INPUT_SHAPE = (96, 96, 3)
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch momentum 0.1

ENCODER_WIDTHS = (48, 96, 160, 256)
BOTTLENECK_WIDTH = 320
DECODER_WIDTHS = (192, 128, 80, 40)

ARCHITECTURES = ("picosam3", "picosam2")
INPUT_NORMALISATION_LAYER = "input_normalisation"

# Keras layer classes the IMX500 converter (imxconv-tf 3.19) accepted for this network.
# tests/test_model.py walks every layer of both models and fails on anything else, so a
# new layer type is a deliberate decision that must first pass a real conversion.
CONVERTER_SUPPORTED_LAYERS = frozenset(
    {
        "InputLayer",
        "Conv2D",
        "DepthwiseConv2D",
        "BatchNormalization",
        "ReLU",
        "ZeroPadding2D",
        "UpSampling2D",
        "Add",
        "GlobalAveragePooling2D",
        "Activation",  # sigmoid of the channel gate only
        "Multiply",
    }
)


def _dw_block(x: tf.Tensor, out_channels: int, prefix: str) -> tf.Tensor:
    """The authors' ``depthwise_conv``: dw3x3 -> BN -> ReLU -> 1x1 -> BN -> ReLU.

    ``prefix`` is the PyTorch module path of the ``nn.Sequential`` (``.`` as ``_``);
    its children are indices 0..5 as in PyTorch.
    """
    L = tf.keras.layers
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{prefix}_0")(x)
    x = L.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}_1")(x)
    x = L.ReLU(name=f"{prefix}_2")(x)
    x = L.Conv2D(out_channels, 1, use_bias=False, name=f"{prefix}_3")(x)
    x = L.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}_4")(x)
    return L.ReLU(name=f"{prefix}_5")(x)


def _down(x: tf.Tensor, name: str) -> tf.Tensor:
    """Plain 3x3 stride-2 convolution with PyTorch's symmetric one-pixel padding."""
    L = tf.keras.layers
    channels = x.shape[-1]
    x = L.ZeroPadding2D(1, name=f"{name}_pad")(x)
    return L.Conv2D(channels, 3, strides=2, padding="valid", use_bias=False, name=name)(x)


def build_model(architecture: str = "picosam3", input_normalisation: bool = False) -> tf.keras.Model:
    """Build PicoSAM3 or PicoSAM2 with Keras' initial weights.

    ``input_normalisation`` puts a per-channel affine map (a 1x1 depthwise convolution
    with bias, 6 parameters) in front of ``encoder_stage1``. Imported PyTorch weights use
    it to compute the authors' ImageNet normalisation: folding it into the first
    convolution instead is inexact at the image border, because PyTorch zero-pads the
    *normalised* image (see :mod:`imx500_picosam.model.import_weights`).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture '{architecture}', expected one of {ARCHITECTURES}")
    L = tf.keras.layers
    inputs = tf.keras.Input(shape=INPUT_SHAPE, name="image")

    features: List[tf.Tensor] = []
    x = inputs
    if input_normalisation:
        x = L.DepthwiseConv2D(1, use_bias=True, name=INPUT_NORMALISATION_LAYER)(x)
    for stage, width in enumerate(ENCODER_WIDTHS, start=1):
        x = _dw_block(x, width, f"encoder_stage{stage}")
        features.append(x)
        x = _down(x, f"down{stage}")

    if architecture == "picosam3":
        x = _dw_block(x, BOTTLENECK_WIDTH, "bottleneck_0")
        x = L.DepthwiseConv2D(3, padding="same", dilation_rate=2, use_bias=False, name="bottleneck_1")(x)
        x = L.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="bottleneck_2")(x)
        x = L.ReLU(name="bottleneck_3")(x)
        x = L.Conv2D(BOTTLENECK_WIDTH, 1, use_bias=False, name="bottleneck_4")(x)
        x = L.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="bottleneck_5")(x)
        x = L.ReLU(name="bottleneck_6")(x)
    else:
        x = _dw_block(x, BOTTLENECK_WIDTH, "bottleneck")

    for level, width in enumerate(DECODER_WIDTHS, start=1):
        skip = features[len(ENCODER_WIDTHS) - level]
        x = L.UpSampling2D(2, interpolation="nearest", name=f"up{level}_0")(x)
        x = _dw_block(x, width, f"up{level}_1")
        skip = L.Conv2D(width, 1, use_bias=True, name=f"skip_conn{len(ENCODER_WIDTHS) + 1 - level}")(skip)
        x = L.Add(name=f"merge{level}")([x, skip])

    if architecture == "picosam3":
        gate = L.GlobalAveragePooling2D(keepdims=True, name="eca_avg_pool")(x)
        gate = L.Conv2D(DECODER_WIDTHS[-1], 1, use_bias=False, name="eca_conv1x1")(gate)
        gate = L.Activation("sigmoid", name="eca_sigmoid")(gate)
        x = L.Multiply(name="eca_gate")([x, gate])
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="refine_0")(x)
        x = L.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="refine_1")(x)
        x = L.ReLU(name="refine_2")(x)
        logits = L.Conv2D(1, 1, use_bias=True, name="refine_3")(x)
    else:
        logits = L.Conv2D(1, 1, use_bias=True, name="output_head")(x)

    return tf.keras.Model(inputs, logits, name=architecture)


def has_input_normalisation(model: tf.keras.Model) -> bool:
    return any(layer.name == INPUT_NORMALISATION_LAYER for layer in model.layers)


def count_parameters(model: tf.keras.Model) -> int:
    """Parameters as PyTorch counts them: trainable weights (BN moving stats excluded)."""
    return int(sum(tf.keras.backend.count_params(w) for w in model.trainable_weights))


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of the convolutions of one forward pass (batch 1).

    Rule: for every Conv2D / DepthwiseConv2D, output H x W x output channels x kernel
    height x kernel width x input channels per group (1 for depthwise). BatchNorm (folded
    into the convolutions on the chip), additions, ReLU, pooling and the channel-gate
    multiply are not counted.
    """

    total: int
    per_layer: Dict[str, int]


def count_conv_macs(model: tf.keras.Model) -> MacCount:
    per_layer: Dict[str, int] = {}
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            per_layer[layer.name] = h * w * c * kh * kw
        elif isinstance(layer, tf.keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            c_in = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            per_layer[layer.name] = h * w * c_out * kh * kw * c_in
    return MacCount(total=int(sum(per_layer.values())), per_layer=per_layer)


def unsupported_layers(model: tf.keras.Model) -> List[Tuple[str, str]]:
    """(layer name, class name) of every layer outside :data:`CONVERTER_SUPPORTED_LAYERS`."""
    found = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in CONVERTER_SUPPORTED_LAYERS:
            found.append((layer.name, kind))
        elif kind == "Activation" and layer.get_config().get("activation") != "sigmoid":
            found.append((layer.name, f"Activation({layer.get_config().get('activation')})"))
    return found
