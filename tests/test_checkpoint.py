import json

import numpy as np
import pytest

from imx500_picosam.model.checkpoint import (
    initialise_checkpoint,
    load_model,
    read_checkpoint,
    sidecar_path_for,
)
from imx500_picosam.errors import PicosamError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return initialise_checkpoint(tmp_path_factory.mktemp("ckpt") / "p3.weights.h5", seed=3)


def test_round_trip_and_sidecar(saved):
    sidecar = json.loads(saved.sidecar_path.read_text())
    assert saved.sidecar_path.name == "p3.json"
    assert sidecar["architecture"] == "picosam3"
    assert sidecar["parameters"] == 1_371_418
    assert sidecar["provenance"]["kind"] == "initialised"
    assert sidecar["provenance"]["details"]["seed"] == 3
    assert sidecar["input"]["shape"] == [96, 96, 3]
    again = read_checkpoint(saved.sidecar_path)  # by sidecar or by weights file
    assert again.weights_sha256 == saved.weights_sha256 == read_checkpoint(saved.weights_path).weights_sha256
    model = load_model(again)
    x = np.random.default_rng(0).random((1, 96, 96, 3)).astype(np.float32)
    assert np.isfinite(model(x).numpy()).all()


def test_seeded_initialisation_is_reproducible(tmp_path, saved):
    twin = initialise_checkpoint(tmp_path / "twin.weights.h5", seed=3)
    other = initialise_checkpoint(tmp_path / "other.weights.h5", seed=4)
    a, b, c = (load_model(k).get_weights() for k in (saved, twin, other))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_no_temporary_files_left(saved):
    assert sorted(p.name for p in saved.weights_path.parent.iterdir()) == ["p3.json", "p3.weights.h5"]


def test_missing_weights(tmp_path):
    with pytest.raises(PicosamError, match="missing.weights.h5: checkpoint weights file not found"):
        read_checkpoint(tmp_path / "missing.weights.h5")


def test_missing_sidecar(tmp_path, saved):
    lone = tmp_path / "lone.weights.h5"
    lone.write_bytes(saved.weights_path.read_bytes())
    with pytest.raises(PicosamError, match="lone.json: checkpoint sidecar not found"):
        read_checkpoint(lone)


def test_tampered_weights_are_detected(tmp_path, saved):
    copy = tmp_path / "t.weights.h5"
    data = bytearray(saved.weights_path.read_bytes())
    data[-100] ^= 0xFF
    copy.write_bytes(bytes(data))
    sidecar_path_for(copy).write_text(saved.sidecar_path.read_text())
    with pytest.raises(PicosamError, match="does not match its sidecar"):
        read_checkpoint(copy)


def test_corrupt_sidecar(tmp_path, saved):
    copy = tmp_path / "c.weights.h5"
    copy.write_bytes(saved.weights_path.read_bytes())
    sidecar_path_for(copy).write_text("{not json")
    with pytest.raises(PicosamError, match="c.json: not valid JSON"):
        read_checkpoint(copy)
