import numpy as np
import pytest
import tensorflow as tf

from imx500_picosam.model.network import (
    BN_EPSILON,
    CONVERTER_SUPPORTED_LAYERS,
    build_model,
    count_conv_macs,
    count_parameters,
    unsupported_layers,
)


@pytest.fixture(scope="module")
def picosam3():
    return build_model("picosam3")


def test_parameter_counts_match_the_papers():
    assert count_parameters(build_model("picosam3")) == 1_371_418
    assert count_parameters(build_model("picosam2")) == 1_262_818


def test_io_contract(picosam3):
    assert picosam3.input_shape == (None, 96, 96, 3)
    assert picosam3.output_shape == (None, 96, 96, 1)
    out = picosam3(np.zeros((2, 96, 96, 3), np.float32))
    assert out.shape == (2, 96, 96, 1)


@pytest.mark.parametrize("architecture", ["picosam3", "picosam2"])
def test_every_layer_is_one_the_converter_accepts(architecture):
    model = build_model(architecture)
    assert unsupported_layers(model) == []
    assert {type(layer).__name__ for layer in model.layers} <= CONVERTER_SUPPORTED_LAYERS


def test_walk_catches_a_normalization_layer():
    inputs = tf.keras.Input((96, 96, 3))
    x = tf.keras.layers.Normalization(mean=0.5, variance=0.1, name="imagenet_norm")(inputs)
    x = tf.keras.layers.Conv2D(1, 1)(x)
    assert ("imagenet_norm", "Normalization") in unsupported_layers(tf.keras.Model(inputs, x))


def test_batchnorm_uses_pytorch_epsilon(picosam3):
    norms = [l for l in picosam3.layers if isinstance(l, tf.keras.layers.BatchNormalization)]
    assert norms and all(l.epsilon == BN_EPSILON == 1e-5 for l in norms)


def test_stride2_convs_pad_symmetrically_like_pytorch(picosam3):
    """down1 with a kernel that picks the top-left tap must read the zero pad at (-1, -1).

    PyTorch (padding=1, stride 2) computes out[i, j] = in[2i-1, 2j-1]; Keras "same" would
    compute in[2i, 2j] instead (no top/left pad), shifting the feature map.
    """
    inputs = tf.keras.Input((8, 8, 48))
    layer_pad = picosam3.get_layer("down1_pad")
    layer_conv = picosam3.get_layer("down1")
    assert layer_pad.padding == ((1, 1), (1, 1)) and layer_conv.padding == "valid"
    probe = tf.keras.Model(inputs, layer_conv(layer_pad(inputs)))
    kernel = np.zeros((3, 3, 48, 48), np.float32)
    for c in range(48):
        kernel[0, 0, c, c] = 1.0
    layer_conv.set_weights([kernel])
    grid = np.arange(64, dtype=np.float32).reshape(1, 8, 8, 1).repeat(48, axis=3)
    out = probe(grid).numpy()[0, :, :, 0]
    expected = np.zeros((4, 4), np.float32)
    for i in range(4):
        for j in range(4):
            r, c = 2 * i - 1, 2 * j - 1
            expected[i, j] = grid[0, r, c, 0] if r >= 0 and c >= 0 else 0.0
    np.testing.assert_array_equal(out, expected)


def test_layer_names_follow_the_pytorch_state_dict(picosam3):
    names = {layer.name for layer in picosam3.layers}
    for name in ("encoder_stage1_0", "down4", "bottleneck_0_3", "bottleneck_1", "up1_1_0",
                 "skip_conn4", "skip_conn1", "eca_conv1x1", "refine_0", "refine_3"):
        assert name in names
    assert "output_head" in {layer.name for layer in build_model("picosam2").layers}


def test_conv_mac_count_follows_its_rule(picosam3):
    macs = count_conv_macs(picosam3)
    # encoder_stage1 depthwise: 96*96 outputs x 3 channels x 9 taps; pointwise 3 -> 48.
    assert macs.per_layer["encoder_stage1_0"] == 96 * 96 * 3 * 9
    assert macs.per_layer["encoder_stage1_3"] == 96 * 96 * 48 * 3
    assert macs.per_layer["down1"] == 48 * 48 * 48 * 9 * 48
    assert macs.per_layer["eca_conv1x1"] == 40 * 40
    assert macs.total == sum(macs.per_layer.values()) == 330_162_496
