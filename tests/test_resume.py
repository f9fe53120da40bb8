"""Exact resume: a `picosam train` killed with SIGKILL at a random step and started again with
the same command logs the same steps and ends with the same weights as a run never killed.

Each case trains a few steps of batch 2 on a three-photo slice of the shared COCO subset, so
CI on two cores runs it in about a minute per case. The teacher cache is filled in-process
by a deterministic stand-in teacher (a blurred box), which is all training reads of it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imx500_picosam.learn.data import load_instances

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class BoxTeacher:
    """Deterministic teacher: the ROI's centre as a soft blob, scored by box size."""

    identity = "test:box-blob"

    def predict(self, image, box_xywh, rule):
        from imx500_picosam.geometry import roi_from_box
        from imx500_picosam.learn.teacher import TeacherOutput

        y, x = np.mgrid[0:96, 0:96].astype(np.float32)
        logits = 4.0 - ((x - 48) ** 2 + (y - 48) ** 2) / 200.0
        score = float(min(1.0, (box_xywh[2] * box_xywh[3]) ** 0.5 / 200.0))
        return TeacherOutput(logits, score, roi_from_box(box_xywh, image.shape[1], image.shape[0], rule=rule))


def _fill_teacher_cache(coco_subset, folder: Path, skip_images: int) -> Path:
    from imx500_picosam.learn.teacher_cache import TeacherCache, fill_cache

    instances = load_instances(coco_subset / "annotations.json", coco_subset / "images", max_images=3 + skip_images)
    fill_cache(instances, BoxTeacher(), TeacherCache(folder), progress=False)
    return folder


def _train_args(coco_subset, out: Path, case: dict, caches) -> list:
    args = []
    for k in range(case["sources"]):
        args += ["--annotations", str(coco_subset / "annotations.json"), "--images", str(coco_subset / "images")]
        if case["mode"] != "supervised":
            args += ["--teacher-cache", str(caches[k])]
        args += ["--source-weight", str(k + 1)]
    return ["train", *args, "--max-images", "3", "--out", str(out), "--mode", case["mode"],
            "--steps", str(case["steps"]), "--batch-size", "2", "--checkpoint-every", str(case["every"]),
            "--warmup-steps", "3", "--lr", "1e-3", "--copy-paste", "0.5", "--ema", str(case["ema"]),
            "--seed", str(case["seed"])]


def _command(args):
    return [sys.executable, "-m", "imx500_picosam", *args]


def _env():
    return dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), TF_CPP_MIN_LOG_LEVEL="3")


def _saved_steps(state: Path) -> int:
    """The newest step whose training state is saved (TensorFlow's `checkpoint` index file)."""
    index = state / "checkpoint"
    try:
        text = index.read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("model_checkpoint_path:"):
            return int(line.split("ckpt-")[-1].strip().strip('"'))
    return 0


def _kill_after(args, out: Path, saved: int, delay: float) -> None:
    """Start the run, wait until the state of step ``saved`` is on disk, wait ``delay`` s
    more (the run is then at some step after it), and SIGKILL it."""
    process = subprocess.Popen(_command(args), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while _saved_steps(out / "train_state") < saved:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(delay)
        assert process.poll() is None, "the run ended before the kill: choose an earlier kill"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def _finish(args) -> str:
    done = subprocess.run(_command(args), env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def _log(out: Path):
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    for row in rows:
        del row["seconds"]  # the one field that is a wall-clock time
    return rows


def _weights(out: Path):
    import h5py

    arrays = {}
    with h5py.File(out / "picosam3.weights.h5", "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


CASES = {
    # one source, ground truth only, weight average
    "one-source-supervised-ema": dict(sources=1, mode="supervised", ema=0.9, seed=3, steps=24, every=4),
    # two sources with the teacher (hybrid) and the weight average
    "two-sources-hybrid-ema": dict(sources=2, mode="hybrid", ema=0.8, seed=11, steps=24, every=4),
    # one source with the teacher alone, no average
    "one-source-teacher": dict(sources=1, mode="teacher", ema=0.0, seed=7, steps=24, every=4),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_run_killed_twice_at_random_steps_ends_as_the_uninterrupted_run(coco_subset, tmp_path, name):
    case = CASES[name]
    caches = [_fill_teacher_cache(coco_subset, tmp_path / f"cache{k}", k) for k in range(case["sources"])] \
        if case["mode"] != "supervised" else []
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _finish(_train_args(coco_subset, straight, case, caches))

    rng = np.random.default_rng(case["seed"])
    args = _train_args(coco_subset, killed, case, caches)
    first_kill = int(rng.integers(1, 3)) * case["every"]  # after the 1st or 2nd save: a step in 4..11
    _kill_after(args, killed, first_kill, float(rng.uniform(0.0, 0.6)))
    second_kill = _saved_steps(killed / "train_state") + int(rng.integers(1, 3)) * case["every"]
    _kill_after(args, killed, second_kill, float(rng.uniform(0.0, 0.6)))
    output = _finish(args)
    assert "resumed from step" in output
    assert "taking over the lock of picosam train" in output  # the killed run's lock, with a word
    assert not (killed / ".picosam.lock").exists()  # and the finished run leaves none

    assert _log(killed) == _log(straight)
    assert [row["step"] for row in _log(killed)] == [10, 20, case["steps"]]
    expected, got = _weights(straight), _weights(killed)
    assert sorted(got) == sorted(expected)
    different = [name for name in expected if not np.array_equal(expected[name], got[name])]
    assert not different, f"weights differ from the uninterrupted run's: {different[:5]}"


def test_one_source_resumes_anywhere_with_the_same_augmentation(coco_subset):
    """With one source a resumed stream gives the very examples (crop, mask, flip, colour,
    pasted donor) that an uninterrupted one gives at the same position, within an epoch and
    across its end."""
    from imx500_picosam.learn.train import Source, TrainConfig, example_stream

    instances = load_instances(coco_subset / "annotations.json", coco_subset / "images", max_images=3)
    count = len(instances.instances)
    config = TrainConfig(mode="supervised", copy_paste=0.5, seed=5)
    stream = example_stream([Source(instances)], config, 0)
    first = [next(stream) for _ in range(2 * count + 3)]
    for start in (1, count // 2, count, count + 2):
        resumed = example_stream([Source(instances)], config, start)
        for expected in first[start:start + 3]:
            got = next(resumed)
            assert got["annotation_id"] == expected["annotation_id"]
            assert (got["image"] == expected["image"]).all() and (got["mask"] == expected["mask"]).all(), start


def test_the_log_keeps_each_step_once_after_a_resume(tmp_path):
    from imx500_picosam.learn.train import _rewind_log

    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (10, 20, 30)) + '{"step": 4')
    _rewind_log(log, 20)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [10, 20]
    _rewind_log(log, 0)
    assert log.read_text() == ""
