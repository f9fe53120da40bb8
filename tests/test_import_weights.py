"""Importing the authors' PyTorch state dicts: numerics against a PyTorch reference, and
every way a file can be wrong."""

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
torch = pytest.importorskip("torch")
nn = torch.nn

from imx500_picosam.calibration import load_crops  # noqa: E402
from imx500_picosam.checkpoint import load_model, read_checkpoint  # noqa: E402
from imx500_picosam.errors import PicosamError  # noqa: E402
from imx500_picosam.import_weights import (  # noqa: E402
    detect_architecture,
    import_checkpoint,
    load_state_dict,
)

TOLERANCE = 1e-3
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


# --------------------------------------------------------------------------- reference


def depthwise_block(cin, cout):
    """The authors' depthwise_conv: dw3x3 -> BN -> ReLU -> 1x1 -> BN -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    )


class ChannelGate(nn.Module):
    """The authors' "eca": global average pool -> 1x1 conv (no bias) -> sigmoid -> scale."""

    def __init__(self, channels):
        super().__init__()
        self.conv1x1 = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x):
        return x * torch.sigmoid(self.conv1x1(x.mean(dim=(2, 3), keepdim=True)))


class ReferencePicoSAM(nn.Module):
    """PicoSAM2 / PicoSAM3 written from the architecture description, same key names."""

    def __init__(self, architecture):
        super().__init__()
        self.architecture = architecture
        enc = (3, 48, 96, 160, 256)
        for i in range(1, 5):
            setattr(self, f"encoder_stage{i}", depthwise_block(enc[i - 1], enc[i]))
            setattr(self, f"down{i}", nn.Conv2d(enc[i], enc[i], 3, stride=2, padding=1, bias=False))
        if architecture == "picosam3":
            self.bottleneck = nn.Sequential(
                depthwise_block(256, 320),
                nn.Conv2d(320, 320, 3, padding=2, dilation=2, groups=320, bias=False), nn.BatchNorm2d(320), nn.ReLU(),
                nn.Conv2d(320, 320, 1, bias=False), nn.BatchNorm2d(320), nn.ReLU(),
            )
        else:
            self.bottleneck = depthwise_block(256, 320)
        dec = (320, 192, 128, 80, 40)
        for i in range(1, 5):
            setattr(self, f"up{i}", nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                  depthwise_block(dec[i - 1], dec[i])))
        self.skip_conn4 = nn.Conv2d(256, 192, 1)
        self.skip_conn3 = nn.Conv2d(160, 128, 1)
        self.skip_conn2 = nn.Conv2d(96, 80, 1)
        self.skip_conn1 = nn.Conv2d(48, 40, 1)
        if architecture == "picosam3":
            self.eca = ChannelGate(40)
            self.refine = nn.Sequential(
                nn.Conv2d(40, 40, 3, padding=1, groups=40, bias=False), nn.BatchNorm2d(40), nn.ReLU(),
                nn.Conv2d(40, 1, 1),
            )
        else:
            self.output_head = nn.Conv2d(40, 1, 1)

    def forward(self, x):
        f1 = self.encoder_stage1(x)
        f2 = self.encoder_stage2(self.down1(f1))
        f3 = self.encoder_stage3(self.down2(f2))
        f4 = self.encoder_stage4(self.down3(f3))
        b = self.bottleneck(self.down4(f4))
        u1 = self.up1(b) + self.skip_conn4(f4)
        u2 = self.up2(u1) + self.skip_conn3(f3)
        u3 = self.up3(u2) + self.skip_conn2(f2)
        u4 = self.up4(u3) + self.skip_conn1(f1)
        if self.architecture == "picosam3":
            return self.refine(self.eca(u4))
        return self.output_head(u4)


def random_reference(architecture, seed, centre_tap_first_layer=False):
    """Random conv weights plus non-trivial BN affine and running statistics."""
    torch.manual_seed(seed)
    model = ReferencePicoSAM(architecture)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(1234)
        if centre_tap_first_layer:
            # Only the centre tap of the first 3x3 depthwise kernel: no tap ever falls in
            # the padding, which is where the normalisation fold is inexact.
            kernel = model.encoder_stage1[0].weight
            centre = kernel[:, :, 1, 1].clone()
            kernel.zero_()
            kernel[:, :, 1, 1] = centre * 3.0
    return model.eval()


def authors_logits(model, sensor_images):
    """The authors' forward: uint8/255, ImageNet-normalised, NCHW; returns NHWC logits."""
    x = torch.from_numpy(sensor_images.astype(np.float64) * 256.0 / 255.0).permute(0, 3, 1, 2)
    x = ((x - MEAN.double()) / STD.double()).float()
    with torch.no_grad():
        return model(x).permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def photos():
    return load_crops("held_out").images


def _save(model, path):
    torch.save(model.state_dict(), path)
    return path


# --------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("architecture", ["picosam3", "picosam2"])
def test_import_matches_pytorch_on_real_photographs(architecture, tmp_path, photos):
    """Random weights and BN statistics, border taps included: exact to 1e-3 everywhere."""
    reference = random_reference(architecture, seed=2)
    pt_path = _save(reference, tmp_path / f"{architecture}.pt")
    checkpoint = import_checkpoint(pt_path, tmp_path / "out")

    keras_logits = load_model(read_checkpoint(checkpoint.weights_path))(photos, training=False).numpy()
    expected = authors_logits(reference, photos)
    assert keras_logits.shape == expected.shape == (len(photos), 96, 96, 1)
    assert np.abs(expected).max() > 0.1  # the comparison is not between two near-zero maps
    difference = np.abs(keras_logits - expected)
    assert difference.max() <= TOLERANCE
    # The border ring, where a fold into encoder_stage1 would be wrong, is exact too.
    assert max(difference[:, 0].max(), difference[:, -1].max(), difference[:, :, 0].max()) <= TOLERANCE

    sidecar = json.loads(checkpoint.sidecar_path.read_text())
    details = sidecar["provenance"]["details"]
    assert sidecar["provenance"]["kind"] == "imported" and sidecar["input_normalisation"] is True
    assert sidecar["parameters"] == {"picosam3": 1_371_418, "picosam2": 1_262_818}[architecture] + 6
    assert details["input_normalisation_max_abs_logit_error"] <= TOLERANCE
    assert details["source_file"] == pt_path.name
    assert details["architecture_detected"] == architecture
    assert details["architecture_requested"] == "auto"
    assert details["name_mismatch_note"] is None
    assert len(details["source_sha256"]) == 64
    assert details["uint8_255_vs_256_max_abs_logit_difference"] > 0


def test_a_fold_without_the_input_layer_would_be_wrong_at_the_border(photos):
    """Why the importer adds a layer: folding the normalisation into encoder_stage1 is off at the edge."""
    from imx500_picosam.import_weights import (
        AUTHORS_PER_SENSOR_SCALE, IMAGENET_MEAN, IMAGENET_STD, _model_with, map_state_dict)

    reference = random_reference("picosam2", seed=2)
    weights = map_state_dict({k: v.numpy() for k, v in reference.state_dict().items()}, "picosam2")
    kernel = weights["encoder_stage1_0"][0].astype(np.float64)
    weights["encoder_stage1_0"][0] = (kernel * (AUTHORS_PER_SENSOR_SCALE / IMAGENET_STD)[None, None, :, None]).astype(np.float32)
    weights["encoder_stage1_1"][2] = weights["encoder_stage1_1"][2] + (IMAGENET_MEAN / IMAGENET_STD * kernel.sum(axis=(0, 1, 3))).astype(np.float32)
    folded = _model_with("picosam2", weights)(photos, training=False).numpy()
    difference = np.abs(folded - authors_logits(reference, photos))
    assert difference[:, 8:-8, 8:-8].max() <= TOLERANCE < difference.max()


# --------------------------------------------------------------------------- detection


def test_picosam2_weights_in_a_file_named_picosam3_are_imported_as_picosam2_with_a_note(tmp_path):
    pt_path = _save(random_reference("picosam2", seed=3), tmp_path / "PicoSAM3_SAM3_epoch1.pt")
    checkpoint = import_checkpoint(pt_path, tmp_path / "out")
    details = checkpoint.provenance.details
    assert checkpoint.architecture == "picosam2"
    assert details["architecture_detected"] == "picosam2"
    assert "picosam3" in details["name_mismatch_note"] and "picosam2" in details["name_mismatch_note"]
    assert checkpoint.weights_path.name == "PicoSAM3_SAM3_epoch1.weights.h5"


def test_forcing_the_wrong_architecture_is_an_error(tmp_path):
    pt_path = _save(random_reference("picosam2", seed=4), tmp_path / "weights.pt")
    with pytest.raises(PicosamError, match="picosam3 requested but .* picosam2") as err:
        import_checkpoint(pt_path, tmp_path / "out", arch="picosam3")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out" / "weights.weights.h5").exists()


def test_detection_by_keys_and_unknown_state_dicts():
    assert detect_architecture({"eca.conv1x1.weight": 0}) == "picosam3"
    assert detect_architecture({"output_head.weight": 0}) == "picosam2"
    with pytest.raises(PicosamError, match="top-level modules are: backbone, head"):
        detect_architecture({"backbone.0.weight": 0, "head.weight": 0})


def test_wrapped_and_data_parallel_state_dicts_are_unwrapped(tmp_path):
    state = random_reference("picosam2", seed=5).state_dict()
    path = tmp_path / "wrapped.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    loaded = load_state_dict(path)
    assert set(loaded) == set(state)
    np.testing.assert_array_equal(loaded["output_head.weight"], state["output_head.weight"].numpy())


# --------------------------------------------------------------------------- strictness


def _one_line_error(pt_path, tmp_path):
    with pytest.raises(PicosamError) as err:
        import_checkpoint(pt_path, tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message and pt_path.name in message
    return message


@pytest.fixture(scope="module")
def picosam2_state():
    return random_reference("picosam2", seed=6).state_dict()


def test_missing_key_is_named(picosam2_state, tmp_path):
    state = dict(picosam2_state)
    del state["up3.1.4.running_var"]
    message = _one_line_error(_save_state(state, tmp_path / "missing.pt"), tmp_path)
    assert "missing 1: up3.1.4.running_var" in message


def test_extra_key_is_named(picosam2_state, tmp_path):
    state = dict(picosam2_state)
    state["extra_head.weight"] = torch.zeros(3)
    message = _one_line_error(_save_state(state, tmp_path / "extra.pt"), tmp_path)
    assert "unexpected 1: extra_head.weight" in message


def test_wrong_shape_is_named(picosam2_state, tmp_path):
    state = dict(picosam2_state)
    state["skip_conn2.weight"] = torch.zeros(80, 96, 3, 3)
    message = _one_line_error(_save_state(state, tmp_path / "shape.pt"), tmp_path)
    assert "wrong shape 1: skip_conn2.weight (80, 96, 3, 3) != (80, 96, 1, 1)" in message


def test_many_missing_keys_are_truncated(picosam2_state, tmp_path):
    state = {k: v for k, v in picosam2_state.items() if not k.startswith("up")}
    message = _one_line_error(_save_state(state, tmp_path / "many.pt"), tmp_path)
    assert "more)" in message and len(message) < 600


def test_corrupt_file_is_one_line_error(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    assert "not a readable PyTorch checkpoint" in _one_line_error(path, tmp_path)


def test_truncated_file_is_one_line_error(picosam2_state, tmp_path):
    full = _save_state(picosam2_state, tmp_path / "full.pt").read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(full[: len(full) // 2])
    assert "not a readable PyTorch checkpoint" in _one_line_error(path, tmp_path)


def test_missing_file_is_one_line_error(tmp_path):
    assert "not found" in _one_line_error(tmp_path / "absent.pt", tmp_path)


def _save_state(state, path):
    torch.save(state, path)
    return path


@pytest.mark.slow
def test_imported_checkpoint_builds_firmware_that_fits(tmp_path):
    """`make rpk CHECKPOINT=*.pt`: the imported model through real MCT and imxconv-tf."""
    import subprocess
    import sys

    pt_path = _save(random_reference("picosam3", seed=5), tmp_path / "PicoSAM3_SAM3_student_best.pt")
    out = tmp_path / "build"
    completed = subprocess.run(
        [sys.executable, "-m", "imx500_picosam", "build", "--checkpoint", str(pt_path), "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((out / "build_report.json").read_text())
    assert report["checkpoint"]["provenance"]["kind"] == "imported"
    assert report["warnings"] == [] and "UNTRAINED" not in completed.stderr
    assert report["converter"]["fit_in_chip"] is True
    assert report["converter"]["input_tensors"][0]["shape"] == [96, 96, 3]
    assert report["converter"]["output_tensors"][0]["shape"] == [96, 96, 1]
    assert (out / "packerOut.zip").is_file()
