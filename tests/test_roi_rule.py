"""The ROI rule is a property of the checkpoint, and every consumer follows it (issue 21).

``square`` is the authors' rule (pad 10 %, square, clip); ``warp`` stretches the padded box
itself. Each test would fail if a consumer used its own rule instead of the checkpoint's.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
from picamera2_fake import make_picamera2  # noqa: E402

from imx500_picosam.errors import PicosamError
from imx500_picosam.geometry import LEGACY_ROI_RULE, ROI_RULES, Roi, WARP_MIN_SIDE, roi_from_box

WIDE_BOX = (100.0, 200.0, 300.0, 60.0)  # a wide box: the two rules give different ROIs


# ---------------------------------------------------------------- geometry


def test_warp_is_the_padded_box_and_square_is_its_square():
    warp = roi_from_box(WIDE_BOX, 640, 480, rule="warp")
    square = roi_from_box(WIDE_BOX, 640, 480, rule="square")
    assert warp == Roi(70, 194, 430, 266)  # 10 % of 300 and of 60 on each side
    assert square == Roi(70, 50, 430, 410)  # the 360 px long side around the same centre
    assert (warp.width, warp.height) == (360, 72) and square.width == square.height == 360


def test_both_rules_clip_to_the_frame_and_warp_keeps_a_minimum_side():
    assert roi_from_box((600, 100, 40, 300), 640, 480, rule="warp") == Roi(596, 70, 640, 430)
    thin = roi_from_box((10.0, 10.0, 0.2, 50.0), 640, 480, rule="warp")
    assert thin.width == WARP_MIN_SIDE and thin.height == 60


def test_the_rule_has_no_default_and_is_checked():
    with pytest.raises(TypeError):
        roi_from_box(WIDE_BOX, 640, 480)  # every caller must say which rule (the checkpoint's)
    with pytest.raises(PicosamError, match="ROI rule 'diagonal' is not one of square, warp"):
        roi_from_box(WIDE_BOX, 640, 480, rule="diagonal")
    assert ROI_RULES == ("square", "warp") and LEGACY_ROI_RULE == "square"
    from imx500_picosam.firmware import package  # spells the rules itself: the flash bundle has no geometry

    assert package.ROI_RULES == ROI_RULES


# ---------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def rule_checkpoints(tmp_path_factory):
    """One tiny-trained-alike checkpoint saved under each rule, and a sidecar without the field."""
    from imx500_picosam.model.checkpoint import Provenance, save_checkpoint
    from imx500_picosam.model.network import build_model

    folder = tmp_path_factory.mktemp("rules")
    model = build_model("picosam3")
    made = {rule: save_checkpoint(model, folder / rule / f"{rule}.weights.h5", Provenance("initialised"), roi_rule=rule)
            for rule in ROI_RULES}
    legacy = save_checkpoint(model, folder / "legacy" / "legacy.weights.h5", Provenance("imported"))
    meta = json.loads(legacy.sidecar_path.read_text())
    del meta["roi_rule"]  # as every sidecar written before rules existed
    legacy.sidecar_path.write_text(json.dumps(meta))
    made["legacy"] = legacy
    return made


def test_the_sidecar_records_the_rule_and_older_ones_are_square(rule_checkpoints, tmp_path):
    from imx500_picosam.model.checkpoint import read_checkpoint

    assert read_checkpoint(rule_checkpoints["warp"].weights_path).roi_rule == "warp"
    assert read_checkpoint(rule_checkpoints["square"].weights_path).roi_rule == "square"
    assert read_checkpoint(rule_checkpoints["legacy"].weights_path).roi_rule == "square"
    sidecar = rule_checkpoints["warp"].sidecar_path
    meta = json.loads(sidecar.read_text())
    bad = tmp_path / "bad.json"
    (tmp_path / "bad.weights.h5").write_bytes(rule_checkpoints["warp"].weights_path.read_bytes())
    bad.write_text(json.dumps({**meta, "weights_file": "bad.weights.h5", "roi_rule": "sideways"}))
    with pytest.raises(PicosamError, match="roi_rule is 'sideways'"):
        read_checkpoint(tmp_path / "bad.weights.h5")


def test_the_shipped_checkpoints_say_their_rule():
    from imx500_picosam.model.checkpoint import DEFAULT_CHECKPOINT, read_checkpoint

    older = read_checkpoint(DEFAULT_CHECKPOINT.with_name("picosam3_minisam.weights.h5"))
    assert older.roi_rule == "square"  # trained before rules existed: the authors' rule
    assert read_checkpoint(DEFAULT_CHECKPOINT).roi_rule in ROI_RULES


def test_predictor_follows_the_checkpoint(rule_checkpoints):
    from imx500_picosam.predictor import Predictor

    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    for name, rule in (("warp", "warp"), ("square", "square"), ("legacy", "square")):
        segmentation = Predictor.from_checkpoint(rule_checkpoints[name]).segment(image, WIDE_BOX)
        assert segmentation.roi == roi_from_box(WIDE_BOX, 640, 480, rule=rule), name
        assert segmentation.mask.shape == (480, 640)


# ---------------------------------------------------------------- data and teacher


def test_training_crops_and_teacher_targets_follow_the_rule(dev_set):
    from imx500_picosam.learn.data import iterate_crops, load_instances

    instances = load_instances(dev_set / "annotations.json", dev_set / "images")

    class SquareCache:  # a teacher cache made in the square frame: its logits mark that ROI
        roi_rule = "square"

        def lookup(self, inst):
            return type("Entry", (), {"logits": np.full((96, 96), 5.0, np.float32), "score": 0.9})()

    wide = max(range(len(instances.instances)),
               key=lambda i: instances.instances[i].box_xywh[2] / instances.instances[i].box_xywh[3])
    inst = instances.instances[wide]
    (warp,) = list(iterate_crops(instances, [wide], teacher_cache=SquareCache(), rule="warp"))
    (square,) = list(iterate_crops(instances, [wide], teacher_cache=SquareCache(), rule="square"))
    assert not np.array_equal(warp["image"], square["image"])
    # In its own frame the square teacher covers the whole crop; resampled into the warp crop
    # it still covers all of it (the warp ROI lies inside the square one).
    assert (square["teacher_logits"] > 0).all() and (warp["teacher_logits"] > 0).mean() > 0.95
    # The ground-truth crop is the instance's mask in the warp ROI.
    from imx500_picosam.geometry import crop_mask_to_model_input

    roi = roi_from_box(inst.box_xywh, inst.image_width, inst.image_height, rule="warp")
    assert np.array_equal(warp["mask"], crop_mask_to_model_input(instances.decode_mask(inst), roi))


def test_teacher_caches_record_their_frame(tmp_path, dev_set):
    from imx500_picosam.learn.data import load_instances
    from imx500_picosam.learn.teacher_cache import TeacherCache

    inst = load_instances(dev_set / "annotations.json", dev_set / "images").instances[0]
    warp = TeacherCache(tmp_path / "warp")
    warp.bind("fake-teacher:1", "warp")
    square = TeacherCache(tmp_path / "square")
    square.bind("fake-teacher:1", "square")
    assert TeacherCache(tmp_path / "warp").roi_rule == "warp"
    assert warp.prompt_key(inst) != square.prompt_key(inst)  # the key includes the frame
    with pytest.raises(PicosamError, match="logits in the 'warp' ROI frame, not 'square'"):
        TeacherCache(tmp_path / "warp").bind("fake-teacher:1", "square")
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "cache.json").write_text(json.dumps({"format": TeacherCache.FORMAT, "teacher": "fake-teacher:1", "size": 96}))
    assert TeacherCache(legacy).roi_rule == "square" and TeacherCache(legacy).prompt_key(inst) == square.prompt_key(inst)


# ---------------------------------------------------------------- evaluation


class AllForeground:
    """An engine that calls every pixel of its crop the object."""

    def predict_crops(self, crops):
        return np.full((len(crops), 96, 96), 8.0, np.float32)


def test_evaluation_scores_warp_models_in_the_papers_square_crop(dev_set):
    from imx500_picosam.geometry import crop_mask_to_model_input
    from imx500_picosam.learn.data import load_instances
    from imx500_picosam.learn.evaluate import CropMethod, evaluate_methods, make_prompt
    from imx500_picosam.metrics import mask_iou

    instances = load_instances(dev_set / "annotations.json", dev_set / "images", max_images=3)
    methods = [CropMethod("warp-model", AllForeground(), "warp"), CropMethod("square-model", AllForeground(), "square")]
    report = evaluate_methods(instances, methods, [0.0], progress=False, resamples=50)
    assert report["roi_rules"] == {"warp-model": "warp", "square-model": "square"}
    order = [inst for group in instances.by_image().values() for inst in group]
    expected = {"warp-model": {"crop": [], "full": []}, "square-model": {"crop": [], "full": []}}
    for inst in order:
        truth = instances.decode_mask(inst)
        prompt = make_prompt(inst, 0.0)
        assert prompt.roi == roi_from_box(inst.box_xywh, inst.image_width, inst.image_height, rule="square")
        for name, rule in (("warp-model", "warp"), ("square-model", "square")):
            roi = roi_from_box(inst.box_xywh, inst.image_width, inst.image_height, rule=rule)
            full = np.zeros_like(truth)
            full[roi.y0:roi.y1, roi.x0:roi.x1] = True  # what the engine says, pasted back
            expected[name]["full"].append(mask_iou(full, truth))
            expected[name]["crop"].append(mask_iou(crop_mask_to_model_input(full, prompt.roi),
                                                   crop_mask_to_model_input(truth, prompt.roi)))
    for name in expected:
        got = report["results"][name]["0.00"]
        assert got["full"]["miou"] == pytest.approx(np.mean(expected[name]["full"]), abs=1e-6)
        # The warp prediction is resampled into the square crop (bilinear at its edges: within a pixel row).
        assert got["crop"]["miou"] == pytest.approx(np.mean(expected[name]["crop"]), abs=0.02)


def test_a_method_keeps_one_name_across_evaluate_and_compare(tmp_path):
    from imx500_picosam.learn.evaluate import compare_runs

    for name, method in (("new", "float"), ("old", "picosam-float")):  # an older run's stored name
        lines = [json.dumps({"annotation_id": i, "method": method, "jitter": 0.0, "size": "small",
                             "crop_iou": 0.5 + 0.01 * i, "full_iou": 0.4}) for i in range(10)]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    result = compare_runs(tmp_path / "new.jsonl", tmp_path / "old.jsonl", "float")
    assert result["n"] == 10 and result["diff"] == pytest.approx(0.0)
    from click.testing import CliRunner

    from imx500_picosam.cli import main

    done = CliRunner().invoke(main, ["compare", str(tmp_path / "new.jsonl"), str(tmp_path / "old.jsonl")])
    assert done.exit_code == 0, done.output
    assert "float, jitter 0" in done.output


# ---------------------------------------------------------------- firmware and camera


def test_intrinsics_carry_the_rule_both_ways():
    from imx500_picosam.firmware.package import roi_rule_of_intrinsics, segmentation_intrinsics

    square = segmentation_intrinsics(30, "square")
    warp = segmentation_intrinsics(30, "warp")
    assert square["input_aspect_ratio"] == {"width": 1, "height": 1}
    assert "input_aspect_ratio" not in warp
    assert roi_rule_of_intrinsics(square) == "square" and roi_rule_of_intrinsics(warp) == "warp"
    with pytest.raises(PicosamError, match="1:1 \\(square\\) or has none \\(warp\\)"):
        roi_rule_of_intrinsics({"input_aspect_ratio": {"width": 4, "height": 3}})


def test_package_takes_the_rule_from_the_build_report(fake_packager_env, tmp_path):
    from click.testing import CliRunner

    from firmware_packaging.rpk import read_rpk
    from imx500_picosam.cli import main

    import zipfile

    packer_out = tmp_path / "packerOut.zip"
    with zipfile.ZipFile(packer_out, "w") as archive:  # the members imxconv-tf writes (contents irrelevant)
        for name in ("dnnParams.xml", "manifest.json", "l2staticData.bin", "verTable.txt"):
            archive.writestr(name, b"x")
    build = tmp_path / "build"
    build.mkdir()
    refused = CliRunner().invoke(main, ["package", "--packer-out", str(packer_out), "--build", str(build)])
    assert refused.exit_code != 0 and "--roi-rule warp|square" in refused.output
    (build / "build_report.json").write_text(json.dumps({"model": {"roi_rule": "warp"}}))
    done = CliRunner().invoke(main, ["package", "--packer-out", str(packer_out), "--build", str(build)])
    assert done.exit_code == 0, done.output
    assert read_rpk(build / "network.rpk").intrinsics.get("input_aspect_ratio") is None
    forced = CliRunner().invoke(main, ["package", "--packer-out", str(packer_out), "--build", str(build),
                                       "--roi-rule", "square"])
    assert forced.exit_code == 0, forced.output
    assert read_rpk(build / "network.rpk").intrinsics["input_aspect_ratio"] == {"width": 1, "height": 1}


@pytest.fixture(scope="module")
def warp_rpk(picosam_rpk, tmp_path_factory):
    """The PicoSAM-shaped RPK with network_intrinsics that carry no input_aspect_ratio."""
    from firmware_packaging.rpk import write_with_intrinsics

    out = tmp_path_factory.mktemp("warp") / "network.rpk"
    write_with_intrinsics(picosam_rpk, out, {"task": "segmentation", "inference_rate": 30})
    return out


def test_the_camera_reads_the_rule_from_the_rpk_and_can_override_it(picosam_rpk, warp_rpk):
    from imx500_picosam.runtime import IMX500Backend
    from imx500_picosam.runtime.backends import camera_backend

    assert IMX500Backend(picosam_rpk, picamera2=make_picamera2(None)).roi_rule == "square"
    assert IMX500Backend(warp_rpk, picamera2=make_picamera2(None)).roi_rule == "warp"
    override = IMX500Backend(picosam_rpk, picamera2=make_picamera2(None), roi_rule="warp")
    assert override.roi_rule == "warp" and override.roi_rule_source == "override"


def test_the_session_asks_the_sensor_for_the_models_roi(tmp_path):
    import cv2

    from imx500_picosam.runtime import EmulatorBackend, Session, open_source

    photo = tmp_path / "frame.png"
    cv2.imwrite(str(photo), np.full((480, 640, 3), 128, np.uint8))
    for rule in ROI_RULES:
        with Session(EmulatorBackend(open_source(str(photo)), AllForeground(), roi_rule=rule), boxes=[WIDE_BOX]) as session:
            step = session.step()
        assert step.result.roi_sensor == roi_from_box(WIDE_BOX, 640, 480, rule=rule, min_size=session.geometry.min_roi_side())


def test_the_emulator_backend_takes_the_checkpoints_rule(rule_checkpoints, tmp_path, monkeypatch):
    import cv2

    from imx500_picosam.firmware import engines
    from imx500_picosam.runtime.backends import emulator_backend

    monkeypatch.setattr(engines, "load_engine", lambda ckpt, kind, log=None: AllForeground())
    photo = tmp_path / "frame.png"
    cv2.imwrite(str(photo), np.full((48, 64, 3), 128, np.uint8))
    backend, info, _ = emulator_backend(str(photo), rule_checkpoints["warp"].weights_path, log=lambda line: None)
    assert backend.roi_rule == "warp" and info["roi_rule"] == "warp" and info["roi_rule_source"] == "checkpoint"
    backend, info, _ = emulator_backend(str(photo), rule_checkpoints["legacy"].weights_path, log=lambda line: None)
    assert backend.roi_rule == "square"
    backend, info, _ = emulator_backend(str(photo), rule_checkpoints["legacy"].weights_path, log=lambda line: None,
                                        roi_rule="warp")
    assert backend.roi_rule == "warp" and info["roi_rule_source"] == "override"


def test_calibration_crops_and_the_quantized_cache_follow_the_rule():
    from imx500_picosam.calibration import crops_fingerprint, load_crops

    square, warp = load_crops("held_out", rule="square"), load_crops("held_out", rule="warp")
    assert square.sources == warp.sources and not np.array_equal(square.images, warp.images)
    assert crops_fingerprint("calibration", rule="square") != crops_fingerprint("calibration", rule="warp")
