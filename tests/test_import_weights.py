"""Importing the authors' PyTorch state dicts: numerics against a real PyTorch reference,
and every way a file can be wrong.

torch never enters this process (it would break MCT in the build venv). The PyTorch side,
tests/torch_reference.py, runs once per session in the separate venv ``.venv-torch``
(``make torch-reference``); tests that need it skip where that venv is missing. The
refusal and strictness tests write their files with tests/crafted_pt.py and need no torch.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from crafted_pt import Call, Global, write_pt
from imx500_picosam.calibration import load_crops
from imx500_picosam.model.checkpoint import load_model, read_checkpoint
from imx500_picosam.cli import main as picosam
from imx500_picosam.errors import PicosamError
from imx500_picosam.model.import_weights import (
    detect_architecture,
    expected_state_dict,
    import_checkpoint,
    load_state_dict,
)
from imx500_picosam.model.torch_file import load as load_torch_file

TOLERANCE = 1e-3
TESTS = Path(__file__).resolve().parent
REFERENCE_SCRIPT = TESTS / "torch_reference.py"
TORCH_PYTHON = Path(os.environ.get("PICOSAM_TORCH_PYTHON", TESTS.parent / ".venv-torch" / "bin" / "python"))


# --------------------------------------------------------------------------- the PyTorch side


def random_state_dict(architecture, seed=0, dtype=np.float32):
    """A complete state dict of ``architecture`` with random values, built without torch."""
    rng = np.random.default_rng(seed)
    state = {key: rng.standard_normal(shape).astype(dtype) for _, _, key, shape in expected_state_dict(architecture)}
    for key in [k for k in state if k.endswith(".running_var")]:
        state[key] = np.abs(state[key]) + np.asarray(0.5, dtype)
        state[key.replace("running_var", "num_batches_tracked")] = np.array(1234, dtype=np.int64)
    return state


def crafted_files():
    """Files written without torch that torch_reference.py reads back with torch.load."""
    return {
        "crafted_picosam2.pt": (random_state_dict("picosam2", seed=1), {}),
        "crafted_big_endian.pt": ({"a": np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5,
                                   "b": np.array([1, -2], dtype=np.int64), "c": np.array([True, False])},
                                  {"byteorder": "big"}),
        "crafted_training.pt": ({"epoch": 3, "lr": 1e-3, "betas": (0.9, 0.999), "note": None, "resumed": False,
                                 "name": "PicoSAM3", "layers": [1, 2, 3],
                                 "model": {"x": np.ones((2, 3), np.float16), "y": np.zeros(0, np.int32)}}, {}),
    }


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """Run tests/torch_reference.py once in .venv-torch; its output folder."""
    if not TORCH_PYTHON.is_file():
        pytest.skip(f"PyTorch reference venv not found at {TORCH_PYTHON}: `make torch-reference` creates it")
    out = tmp_path_factory.mktemp("torch_reference")
    np.save(out / "photos.npy", load_crops("held_out", rule="square").images)
    crafted = [write_pt(out / name, content, **options) for name, (content, options) in crafted_files().items()]
    completed = subprocess.run(
        [str(TORCH_PYTHON), str(REFERENCE_SCRIPT), str(out / "photos.npy"), str(out), *map(str, crafted)],
        capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def photos():
    return load_crops("held_out", rule="square").images


# --------------------------------------------------------------------------- the reader


def test_reader_rebuilds_every_storage_type_and_layout_as_torch_holds_it(reference):
    read = load_torch_file(reference / "tensors.pt")
    expected = np.load(reference / "tensors.npz")
    assert sorted(read) == sorted(expected.files)
    for name in expected.files:
        assert read[name].dtype == expected[name].dtype, name
        assert read[name].shape == expected[name].shape, name
        np.testing.assert_array_equal(read[name], expected[name], err_msg=name)


def _flatten(obj, name, tensors, values):
    if isinstance(obj, dict):
        for key, value in obj.items():
            _flatten(value, f"{name}/{key}", tensors, values)
    elif isinstance(obj, np.ndarray):
        tensors[name] = obj
    else:
        values[name] = list(obj) if isinstance(obj, tuple) else obj


def test_files_crafted_without_torch_are_what_torch_reads(reference):
    """The refusal tests below write their files with crafted_pt; torch reads them alike."""
    by_torch = np.load(reference / "crafted.npz")
    ours, our_values = {}, {}
    for name in crafted_files():
        _flatten(load_torch_file(reference / name), name, ours, our_values)
    assert sorted(ours) == sorted(by_torch.files) and len(ours) > 100
    for key in by_torch.files:
        assert ours[key].dtype == by_torch[key].dtype and ours[key].shape == by_torch[key].shape, key
        np.testing.assert_array_equal(ours[key], by_torch[key], err_msg=key)
    assert our_values == json.loads((reference / "crafted.json").read_text())
    assert our_values["crafted_training.pt/betas"] == [0.9, 0.999]
    np.testing.assert_array_equal(by_torch["crafted_big_endian.pt/a"], np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5)


# --------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("architecture", ["picosam3", "picosam2"])
def test_import_matches_pytorch_on_real_photographs(architecture, reference, tmp_path, photos):
    """Random weights and BN statistics, border taps included: exact to 1e-3 everywhere."""
    pt_path = reference / f"{architecture}.pt"
    checkpoint = import_checkpoint(pt_path, tmp_path / "out")

    keras_logits = load_model(read_checkpoint(checkpoint.weights_path))(photos, training=False).numpy()
    expected = np.load(reference / "reference_logits.npz")[architecture]
    assert keras_logits.shape == expected.shape == (len(photos), 96, 96, 1)
    assert np.abs(expected).max() > 0.1  # the comparison is not between two near-zero maps
    difference = np.abs(keras_logits - expected)
    print(f"{architecture}: max |Δ logit| vs PyTorch {difference.max():.2e} over {len(photos)} crops")
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


def test_a_fold_without_the_input_layer_would_be_wrong_at_the_border(reference, photos):
    """Why the importer adds a layer: folding the normalisation into encoder_stage1 is off at the edge."""
    from imx500_picosam.model.import_weights import (
        AUTHORS_PER_SENSOR_SCALE, IMAGENET_MEAN, IMAGENET_STD, _model_with, map_state_dict)

    weights = map_state_dict(load_state_dict(reference / "picosam2.pt"), "picosam2")
    kernel = weights["encoder_stage1_0"][0].astype(np.float64)
    weights["encoder_stage1_0"][0] = (kernel * (AUTHORS_PER_SENSOR_SCALE / IMAGENET_STD)[None, None, :, None]).astype(np.float32)
    weights["encoder_stage1_1"][2] = weights["encoder_stage1_1"][2] + (IMAGENET_MEAN / IMAGENET_STD * kernel.sum(axis=(0, 1, 3))).astype(np.float32)
    folded = _model_with("picosam2", weights)(photos, training=False).numpy()
    difference = np.abs(folded - np.load(reference / "reference_logits.npz")["picosam2"])
    assert difference[:, 8:-8, 8:-8].max() <= TOLERANCE < difference.max()


# --------------------------------------------------------------------------- detection and wrappers


def test_picosam2_weights_in_a_file_named_picosam3_are_imported_as_picosam2_with_a_note(reference, tmp_path):
    checkpoint = import_checkpoint(reference / "PicoSAM3_SAM3_epoch1.pt", tmp_path / "out")
    details = checkpoint.provenance.details
    assert checkpoint.architecture == "picosam2"
    assert details["architecture_detected"] == "picosam2"
    assert "picosam3" in details["name_mismatch_note"] and "picosam2" in details["name_mismatch_note"]
    assert checkpoint.weights_path.name == "PicoSAM3_SAM3_epoch1.weights.h5"


def test_forcing_the_wrong_architecture_is_an_error(reference, tmp_path):
    with pytest.raises(PicosamError, match="picosam3 requested but .* picosam2") as err:
        import_checkpoint(reference / "PicoSAM3_SAM3_epoch1.pt", tmp_path / "out", arch="picosam3")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_data_parallel_training_checkpoint_is_unwrapped(reference):
    """epoch, model_state_dict with "module." keys, and an Adam optimizer state around it."""
    state = load_state_dict(reference / "training_checkpoint.pt")
    assert detect_architecture(state) == "picosam2"
    assert not any(key.startswith("module.") for key in state)
    assert state["up3.1.4.num_batches_tracked"] == 1235  # one training step after 1234
    assert state["output_head.weight"].dtype == np.float32


@pytest.mark.parametrize("wrapper", ["state_dict", "model_state_dict", "model"])
def test_wrapped_state_dicts_are_unwrapped(wrapper, tmp_path):
    state = random_state_dict("picosam2", seed=5)
    path = write_pt(tmp_path / "wrapped.pt", {"epoch": 3, wrapper: {f"module.{k}": v for k, v in state.items()}})
    loaded = load_state_dict(path)
    assert set(loaded) == set(state)
    np.testing.assert_array_equal(loaded["output_head.weight"], state["output_head.weight"])


def test_half_precision_weights_are_read_as_float32(tmp_path):
    state = random_state_dict("picosam3", seed=8, dtype=np.float16)
    loaded = load_state_dict(write_pt(tmp_path / "half.pt", state))
    assert loaded["refine.3.bias"].dtype == np.float32
    np.testing.assert_array_equal(loaded["refine.3.bias"], state["refine.3.bias"].astype(np.float32))


def test_detection_by_keys_and_unknown_state_dicts():
    assert detect_architecture({"eca.conv1x1.weight": 0}) == "picosam3"
    assert detect_architecture({"output_head.weight": 0}) == "picosam2"
    with pytest.raises(PicosamError, match="top-level modules are: backbone, head"):
        detect_architecture({"backbone.0.weight": 0, "head.weight": 0})


# --------------------------------------------------------------------------- strictness


def _one_line_error(pt_path, tmp_path):
    with pytest.raises(PicosamError) as err:
        import_checkpoint(pt_path, tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message and pt_path.name in message
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    return message


@pytest.fixture(scope="module")
def picosam2_state():
    return random_state_dict("picosam2", seed=6)


def test_a_network_of_another_architecture_is_named(tmp_path):
    state = {"backbone.0.weight": np.zeros((8, 3, 3, 3), np.float32), "head.weight": np.zeros((1, 8), np.float32)}
    message = _one_line_error(write_pt(tmp_path / "resnet.pt", state), tmp_path)
    assert "neither PicoSAM3" in message and "backbone, head" in message


def test_missing_key_is_named(picosam2_state, tmp_path):
    state = dict(picosam2_state)
    del state["up3.1.4.running_var"]
    message = _one_line_error(write_pt(tmp_path / "missing.pt", state), tmp_path)
    assert "missing 1: up3.1.4.running_var" in message


def test_extra_key_is_named(picosam2_state, tmp_path):
    state = dict(picosam2_state)
    state["extra_head.weight"] = np.zeros(3, np.float32)
    message = _one_line_error(write_pt(tmp_path / "extra.pt", state), tmp_path)
    assert "unexpected 1: extra_head.weight" in message


def test_wrong_shape_is_named(picosam2_state, tmp_path):
    state = dict(picosam2_state)
    state["skip_conn2.weight"] = np.zeros((80, 96, 3, 3), np.float32)
    message = _one_line_error(write_pt(tmp_path / "shape.pt", state), tmp_path)
    assert "wrong shape 1: skip_conn2.weight (80, 96, 3, 3) != (80, 96, 1, 1)" in message


def test_a_truncated_state_dict_lists_what_is_missing(picosam2_state, tmp_path):
    state = {k: v for k, v in picosam2_state.items() if not k.startswith("up")}
    message = _one_line_error(write_pt(tmp_path / "many.pt", state), tmp_path)
    decoder = [key for _, _, key, _ in expected_state_dict("picosam2") if key.startswith("up")]
    assert f"missing {len(decoder)}: {decoder[0]}" in message and f"(+{len(decoder) - 5} more)" in message
    assert len(message) < 600


# --------------------------------------------------------------------------- files that are not state dicts


def test_corrupt_file_is_one_line_error(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    assert "not a readable PyTorch checkpoint" in _one_line_error(path, tmp_path)


def test_truncated_file_is_one_line_error(picosam2_state, tmp_path):
    full = write_pt(tmp_path / "full.pt", picosam2_state).read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(full[: len(full) // 2])
    assert "truncated download" in _one_line_error(path, tmp_path)


def test_damaged_storage_bytes_are_one_line_error(tmp_path):
    path = write_pt(tmp_path / "damaged.pt", {"output_head.weight": np.ones((1, 40, 1, 1), np.float32)})
    data = bytearray(path.read_bytes())
    at = data.index(np.ones(4, np.float32).tobytes())
    data[at:at + 4] = b"\x00\x00\xc0\x7f"  # a NaN where the zip's CRC expects 1.0
    path.write_bytes(bytes(data))
    assert "(corrupt or truncated): BadZipFile: Bad CRC-32 for file 'damaged/data/0'" in _one_line_error(path, tmp_path)


def test_missing_file_is_one_line_error(tmp_path):
    assert "not found" in _one_line_error(tmp_path / "absent.pt", tmp_path)


def test_a_zip_that_torch_did_not_write_is_refused(tmp_path):
    import zipfile

    path = tmp_path / "photos.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("photos/cat.jpg", b"\xff\xd8")
    assert "not one torch.save wrote" in _one_line_error(path, tmp_path)


@pytest.mark.parametrize("content", [[1, 2, 3], 42, "weights", {}])
def test_a_pickle_of_something_else_is_not_a_state_dict(content, tmp_path):
    message = _one_line_error(write_pt(tmp_path / "other.pt", content), tmp_path)
    assert f"holds no state dict (found {type(content).__name__})" in message


def test_a_non_tensor_entry_is_named(tmp_path):
    message = _one_line_error(write_pt(tmp_path / "mixed.pt", {"output_head.weight": np.zeros(1, np.float32),
                                                               "output_head.bias": 0.5}), tmp_path)
    assert "entry 'output_head.bias' is a float, not a tensor" in message


def test_a_pickle_that_would_run_a_command_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "payload-ran"
    state = {"output_head.weight": np.zeros((1, 40, 1, 1), np.float32),
             "payload": Call(Global("os", "system"), (f"touch {marker}",))}
    message = _one_line_error(write_pt(tmp_path / "evil.pt", state), tmp_path)
    assert "os.system" in message and "nothing was executed" in message
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [("builtins", "eval"), ("argparse", "Namespace"), ("__main__", "PicoSAM3"),
                                          ("torch", "UntypedStorage"), ("numpy.core.multiarray", "_reconstruct")])
def test_globals_outside_a_state_dict_are_refused(module, name, tmp_path):
    message = _one_line_error(write_pt(tmp_path / "model.pt", {"model": Call(Global(module, name), ())}), tmp_path)
    assert f"needs {module}.{name}, which is not part of a state dict" in message


def _one_long_tuple(value):
    return b"(\x8a\x08" + value.to_bytes(8, "little", signed=True) + b"t"


@pytest.mark.parametrize("size, stride, message", [
    (4, 1000, "reaches element 3000 of a storage of 4"),  # would read far past the 16 bytes
    (1 << 40, 0, "more than this reader builds"),  # a stride-0 view asking for 4 TB
])
def test_a_tensor_view_its_storage_cannot_back_is_refused(size, stride, message, tmp_path):
    """A strided view must stay inside its storage and be of sane size: checked before reading."""
    def edit(data):
        # The tensor is written with size (4,) and stride (1,).
        assert data.count(_one_long_tuple(4)) == data.count(_one_long_tuple(1)) == 1
        return data.replace(_one_long_tuple(4), _one_long_tuple(size)).replace(_one_long_tuple(1), _one_long_tuple(stride))

    path = write_pt(tmp_path / "overrun.pt", {"output_head.weight": np.zeros(4, np.float32)}, edit_pickle=edit)
    assert message in _one_line_error(path, tmp_path)


def test_legacy_and_torchscript_files_are_refused_with_what_to_do(tmp_path):
    from imx500_picosam.model.torch_file import LEGACY_MAGIC

    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(LEGACY_MAGIC + b".\x80\x02M\xe9\x03.")
    assert "legacy (pre-1.6)" in _one_line_error(legacy, tmp_path)
    scripted = write_pt(tmp_path / "scripted.pt", {"w": np.zeros(1, np.float32)},
                        extra_records={"constants.pkl": b"\x80\x02).", "code/__torch__/model.py": b""})
    assert "TorchScript archive" in _one_line_error(scripted, tmp_path)


def test_real_legacy_torchscript_and_payload_files_are_refused(reference, tmp_path):
    """The same refusals for files PyTorch itself wrote."""
    assert "legacy (pre-1.6)" in _one_line_error(reference / "legacy.pt", tmp_path)
    assert "TorchScript archive" in _one_line_error(reference / "torchscript.pt", tmp_path)
    assert "needs posix.system" in _one_line_error(reference / "payload.pt", tmp_path)
    assert not (reference / "payload-ran").exists()


def test_cli_prints_one_error_line_and_exits_1(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(picosam, ["import-weights", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ") and "corrupt.pt" in result.output


# --------------------------------------------------------------------------- into firmware


@pytest.mark.slow
def test_imported_checkpoint_builds_firmware_that_fits(reference, tmp_path):
    """`make rpk CHECKPOINT=*.pt`: the imported model through real MCT and imxconv-tf."""
    pt_path = tmp_path / "PicoSAM3_SAM3_student_best.pt"
    pt_path.write_bytes((reference / "picosam3.pt").read_bytes())
    out = tmp_path / "build"
    completed = subprocess.run(
        [sys.executable, "-m", "imx500_picosam", "build", "--checkpoint", str(pt_path), "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((out / "build_report.json").read_text())
    assert report["checkpoint"]["provenance"]["kind"] == "imported"
    assert report["checkpoint"]["provenance"]["details"]["source_file"] == pt_path.name
    assert report["model"]["parameters"] == 1_371_418 + 6
    assert report["warnings"] == [] and "UNTRAINED" not in completed.stderr
    assert report["converter"]["fit_in_chip"] is True
    assert report["converter"]["input_tensors"][0]["shape"] == [96, 96, 3]
    assert report["converter"]["output_tensors"][0]["shape"] == [96, 96, 1]
    assert (out / "packerOut.zip").is_file()
    print(f"imported .pt build: {report['converter']['memory_usage_mb']} MB of "
          f"{report['converter']['total_on_chip_mb']} MB, fit in chip {report['converter']['fit_in_chip']}, "
          f"float vs quantized mean IoU {report['float_vs_quantized']['mean_iou']}")
