"""Issue 15, finding 7: every artefact gets the mode the umask gives a new file (not mkstemp's 0600)."""

import os
import stat

import pytest

from imx500_picosam.atomic import atomic_directory, atomic_path, write_json
from imx500_picosam.model.checkpoint import Checkpoint, Provenance, write_pair


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_folders_and_checkpoints_honour_the_umask(umask, tmp_path):
    with atomic_path(tmp_path / "mask.png", suffix=".png") as tmp:
        tmp.write_bytes(b"png")
    write_json(tmp_path / "report.json", {"a": 1})
    with atomic_directory(tmp_path / "firmware") as work:
        (work / "network.rpk").write_bytes(b"rpk")
    weights = tmp_path / "m.weights.h5"
    write_pair(weights, lambda tmp: tmp.write_bytes(b"w"),
               lambda digest: Checkpoint(weights, "picosam3", Provenance("trained", {}), digest, 1))
    for name in ("mask.png", "report.json", "m.weights.h5", "m.json"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name
    assert _mode(tmp_path / "firmware") == 0o777 & ~umask


def test_overwriting_a_file_gives_it_the_umask_mode_not_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        target = tmp_path / "report.json"
        target.write_text("{}")
        assert _mode(target) == 0o644
        write_json(target, {"b": 2})
        assert _mode(target) == 0o644
    finally:
        os.umask(previous)


def test_rpk_written_with_intrinsics_honours_the_umask(tmp_path):
    from pathlib import Path

    from firmware_packaging.rpk import write_with_intrinsics

    small = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "rpk" / "imx500_network_inputtensoronly.rpk"
    if not small.is_file():
        pytest.skip("vendor RPK fixtures not found")
    previous = os.umask(0o022)
    try:
        write_with_intrinsics(small, tmp_path / "out.rpk", {"task": "segmentation", "inference_rate": 10})
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "out.rpk") == 0o644
