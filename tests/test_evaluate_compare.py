"""`picosam compare`: paired differences of two evaluation runs from their per-instance files."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from imx500_picosam.cli import main
from imx500_picosam.errors import PicosamError
from imx500_picosam.learn.evaluate import compare_runs


def _write(path, ious, method="picosam-float", jitter=0.0):
    with open(path, "w") as handle:
        for k, value in enumerate(ious):
            handle.write(json.dumps({"image_id": k // 3, "annotation_id": 100 + k, "method": method, "jitter": jitter,
                                     "crop_iou": value, "full_iou": value, "size": "small"}) + "\n")
            handle.write(json.dumps({"image_id": k // 3, "annotation_id": 100 + k, "method": "box", "jitter": jitter,
                                     "crop_iou": 0.5, "full_iou": 0.5, "size": "small"}) + "\n")


def test_paired_difference_is_exact_and_narrower_than_unpaired(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 200)
    better = np.clip(base + 0.03 + rng.normal(0, 0.01, 200), 0, 1)
    _write(tmp_path / "a.jsonl", better)
    _write(tmp_path / "b.jsonl", base)
    r = compare_runs(tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    assert r["n"] == 200 and r["diff"] == pytest.approx(better.mean() - base.mean())
    low, high = r["diff_ci95"]
    assert 0 < low < r["diff"] < high  # a small, consistent gain is resolved by pairing...
    assert r["a"]["ci95"][0] < r["b"]["ci95"][1]  # ...though the two runs' own intervals overlap
    same = compare_runs(tmp_path / "a.jsonl", tmp_path / "a.jsonl")
    assert same["diff"] == 0 and same["diff_ci95"] == [0.0, 0.0]
    output = CliRunner().invoke(main, ["compare", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]).output
    assert f"A - B: {100 * r['diff']:+.1f} points" in output and "n = 200" in output


def test_runs_over_other_instances_or_bad_lines_are_refused(tmp_path):
    _write(tmp_path / "a.jsonl", [0.5] * 10)
    _write(tmp_path / "b.jsonl", [0.5] * 11)
    with pytest.raises(PicosamError, match="different instances"):
        compare_runs(tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    with pytest.raises(PicosamError, match="no line for method 'teacher'"):
        compare_runs(tmp_path / "a.jsonl", tmp_path / "a.jsonl", method="teacher")
    (tmp_path / "bad.jsonl").write_text('{"method": "picosam-float"}\n')
    with pytest.raises(PicosamError, match="bad.jsonl:1"):
        compare_runs(tmp_path / "bad.jsonl", tmp_path / "a.jsonl")
