"""Outputs that could go wrong silently are refused, before any work, in one line (issue 19)."""

import zipfile

import pytest
from click.testing import CliRunner

from conftest import PHOTOS
from firmware_packaging.files import file_kind
from imx500_picosam.cli import main
from imx500_picosam.model.checkpoint import DEFAULT_CHECKPOINT

PHOTO = PHOTOS / "chelsea.png"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, *pieces):
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (ValueError, TypeError, OSError))
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for piece in pieces:
        assert piece in errors[0], result.output


@pytest.fixture
def packer_out(tmp_path):
    path = tmp_path / "packerOut.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("dnnParams.xml", "manifest.json", "l2staticData.bin"):
            archive.writestr(name, b"x")
    return path


def test_segment_refuses_a_missing_folder_and_creates_nothing(tmp_path):
    out = tmp_path / "nonexistent" / "dir" / "m.png"
    result = run("segment", "--image", PHOTO, "--box", "135,75,75,75", "--out", out)
    one_line_error(result, f"folder {out.parent} does not exist", "mkdir -p")
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.parametrize("option, name, allowed", [("--out", "mask.txt", ".png"), ("--logits", "l.png", ".npy")])
def test_segment_refuses_an_unknown_extension(tmp_path, option, name, allowed):
    args = {"--out": tmp_path / "m.png", option: tmp_path / name}
    result = run("segment", "--image", PHOTO, "--box", "135,75,75,75", *[x for kv in args.items() for x in kv])
    one_line_error(result, f"{option} {tmp_path / name}: this output must end in {allowed}")
    assert not (tmp_path / name).exists()


def test_evaluate_and_contact_sheet_check_their_out_before_loading(tmp_path):
    result = run("evaluate", "--annotations", "a.json", "--images", ".", "--methods", "box", "--out", tmp_path / "r.txt")
    one_line_error(result, "must end in .json")
    result = run("contact-sheet", "--annotations", "a.json", "--images", ".", "--out", tmp_path / "x" / "s.txt")
    one_line_error(result, "must end in .png")
    assert not (tmp_path / "x").exists()


def test_evaluate_makes_its_run_folder_and_says_so(tmp_path):
    out = tmp_path / "runs" / "mine" / "dev.json"
    result = run("evaluate", "--annotations", tmp_path / "missing.json", "--images", ".", "--methods", "box",
                 "--out", out)
    assert f"made folder {out.parent} for --out dev.json" in result.output
    assert out.parent.is_dir()


@pytest.mark.parametrize("jitter", ["5", "0,0.5", "-0.1", "abc", ","])
def test_evaluate_jitter_is_range_checked_at_parse_time(tmp_path, jitter):
    result = run("evaluate", "--annotations", "missing.json", "--images", ".", "--jitter", jitter,
                 "--out", tmp_path / "r.json")
    assert result.exit_code == 2 and "--jitter" in result.output, result.output
    assert "missing.json" not in result.output  # refused before the annotations were read


@pytest.mark.parametrize("args", [
    ("build", "--inference-rate", "0"),
    ("package", "--inference-rate", "-5"),
    ("train", "--annotations", "a", "--images", "i", "--out", "o", "--box-jitter", "2"),
    ("train", "--annotations", "a", "--images", "i", "--out", "o", "--lr", "-1"),
    ("train", "--annotations", "a", "--images", "i", "--out", "o", "--colour", "3"),
    ("teacher", "cache", "--annotations", "a", "--images", "i", "--out", "o", "--rank", "-1"),
    ("teacher", "cache", "--annotations", "a", "--images", "i", "--out", "o", "--world-size", "0"),
    ("compare", "a.jsonl", "b.jsonl", "--jitter", "7"),
])
def test_numeric_options_are_range_checked(args):
    result = run(*args)
    assert result.exit_code == 2 and "is not in the range" in result.output, result.output


def test_package_refuses_what_is_not_a_packer_out(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# hello\n")
    result = run("package", "--packer-out", readme, "--build", tmp_path / "b")
    one_line_error(result, f"{readme}: is a text file, not a packerOut.zip")
    assert "ready" not in result.output
    result = run("package", "--packer-out", DEFAULT_CHECKPOINT, "--build", tmp_path / "b")
    one_line_error(result, "is a Keras checkpoint (HDF5, .weights.h5), not a packerOut.zip")


def test_package_accepts_a_packer_out(tmp_path, packer_out, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    result = run("package", "--packer-out", packer_out, "--build", tmp_path / "b")
    assert result.exit_code == 0 and "is ready" in result.output, result.output


def test_rpk_inspect_says_a_packer_out_must_be_packaged_first(packer_out):
    result = run("rpk", "inspect", packer_out)
    one_line_error(result, f"{packer_out}: is a packerOut.zip", "package it first",
                   f"picosam package --packer-out {packer_out}")


def test_rpk_inspect_names_a_checkpoint():
    one_line_error(run("rpk", "inspect", DEFAULT_CHECKPOINT), "is a Keras checkpoint")


def test_a_checkpoint_option_names_what_it_was_given(packer_out):
    result = run("segment", "--checkpoint", packer_out, "--image", PHOTO, "--box", "1,1,5,5",
                 "--out", packer_out.parent / "m.png")
    one_line_error(result, "is a packerOut.zip", "not a checkpoint")


def test_file_kinds(tmp_path, packer_out):
    (tmp_path / "t.md").write_text("text")
    (tmp_path / "z.zip").write_bytes(b"PK\x03\x04 broken")
    assert file_kind(packer_out) == "packerOut"
    assert file_kind(DEFAULT_CHECKPOINT) == "checkpoint"
    assert file_kind(PHOTO) == "image"
    assert file_kind(tmp_path / "t.md") == "text"
    assert file_kind(tmp_path / "z.zip") == "zip"
    assert file_kind(tmp_path) is None and file_kind(tmp_path / "missing") is None
