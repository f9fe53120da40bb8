"""The checkpoint front door: every command's --checkpoint means the same thing."""

import pytest
from click.testing import CliRunner

from crafted_pt import write_pt
from imx500_picosam.model import resolve
from imx500_picosam.model.checkpoint import DEFAULT_CHECKPOINT, initialise_checkpoint, read_checkpoint
from imx500_picosam.cli import main
from imx500_picosam.errors import PicosamError
from imx500_picosam.model.resolve import resolve_checkpoint
from test_import_weights import random_state_dict


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return initialise_checkpoint(tmp_path_factory.mktemp("ckpt") / "p3.weights.h5", seed=3)


def test_no_value_is_the_shipped_checkpoint(tmp_path):
    chosen = resolve_checkpoint(None, work_dir=tmp_path)
    assert chosen.weights_path == DEFAULT_CHECKPOINT and chosen.provenance.kind == "trained"
    assert not any(tmp_path.iterdir())  # nothing made


def test_without_a_shipped_checkpoint_an_initialisation_is_made_once(tmp_path, monkeypatch):
    import imx500_picosam.model.checkpoint as checkpoint_module

    monkeypatch.setattr(checkpoint_module, "DEFAULT_CHECKPOINT", tmp_path / "absent.weights.h5")
    first = resolve_checkpoint(None, work_dir=tmp_path / "work")
    assert first.provenance.kind == "initialised" and resolve.is_untrained(first)
    assert first.weights_path == tmp_path / "work" / resolve.INIT_NAME
    assert resolve_checkpoint(None, work_dir=tmp_path / "work").weights_sha256 == first.weights_sha256


def test_a_weights_file_its_sidecar_and_its_folder_name_the_same_checkpoint(saved):
    by_weights = resolve_checkpoint(saved.weights_path)
    assert resolve_checkpoint(saved.sidecar_path).weights_sha256 == by_weights.weights_sha256
    assert resolve_checkpoint(saved.weights_path.parent).weights_path == saved.weights_path


def test_a_folder_must_hold_exactly_one_checkpoint(tmp_path, saved):
    with pytest.raises(PicosamError, match="holds no checkpoint"):
        resolve_checkpoint(tmp_path)
    for name in ("a", "b"):
        (tmp_path / f"{name}.weights.h5").write_bytes(saved.weights_path.read_bytes())
        (tmp_path / f"{name}.json").write_text(saved.sidecar_path.read_text())
    with pytest.raises(PicosamError, match=r"holds 2 checkpoints \(a.weights.h5, b.weights.h5\); name one"):
        resolve_checkpoint(tmp_path)


def test_other_files_are_one_line_errors(tmp_path):
    with pytest.raises(PicosamError, match="none.weights.h5: checkpoint weights file not found"):
        resolve_checkpoint(tmp_path / "none.weights.h5")
    with pytest.raises(PicosamError, match="nothing.bin: checkpoint not found"):
        resolve_checkpoint(tmp_path / "nothing.bin")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PicosamError, match="notes.txt: is a text file, not a checkpoint"):
        resolve_checkpoint(tmp_path / "notes.txt")


def test_a_pt_is_imported_once_and_reused(tmp_path, monkeypatch):
    pt_path = write_pt(tmp_path / "authors.pt", random_state_dict("picosam2", seed=4))
    imported = resolve_checkpoint(pt_path, work_dir=tmp_path / "work")
    assert imported.provenance.kind == "imported" and imported.architecture == "picosam2"
    assert imported.weights_path.parent.parent == tmp_path / "work" / "imported"

    def must_not_import(*args, **kwargs):
        raise AssertionError("imported again")

    monkeypatch.setattr(resolve, "import_checkpoint", must_not_import)
    again = resolve_checkpoint(pt_path, work_dir=tmp_path / "work")
    assert again.weights_path == imported.weights_path and again.weights_sha256 == imported.weights_sha256


def test_an_import_weights_folder_is_a_checkpoint_for_other_commands(tmp_path):
    pt_path = write_pt(tmp_path / "authors.pt", random_state_dict("picosam3", seed=6))
    result = CliRunner().invoke(main, ["import-weights", str(pt_path), "--arch", "picosam3", "--out", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output  # --arch: the old spelling of --architecture still works
    assert read_checkpoint(resolve_checkpoint(tmp_path / "w").weights_path).architecture == "picosam3"


def test_old_option_spellings_work_but_are_not_shown(tmp_path):
    runner = CliRunner()
    build_help = runner.invoke(main, ["build", "--help"]).output
    assert "--build" in build_help and "--out" not in build_help
    weights_help = runner.invoke(main, ["import-weights", "--help"]).output
    assert "--architecture" in weights_help and "--arch " not in weights_help
    package_help = runner.invoke(main, ["package", "--help"]).output
    assert "--build" in package_help and "--out" not in package_help
    # the old spelling reaches the same parameter
    missing = tmp_path / "missing.zip"
    for spelling in ("--out", "--build"):
        result = runner.invoke(main, ["package", "--packer-out", str(missing), spelling, str(tmp_path / "b")])
        assert result.exit_code == 1 and "missing.zip: packerOut.zip not found" in result.output
