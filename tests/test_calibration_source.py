"""`picosam build --calibration PATH`: your own photos (a folder, or COCO annotations + images)
as MCT's calibration data, cut with the checkpoint's ROI rule, keyed into the quantized-model
cache and recorded in the build report. MCT and the converter are replaced where they would
only cost minutes: what is checked is which crops reach them."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import PHOTOS
from imx500_picosam import calibration
from imx500_picosam.calibration import CalibrationSource, annotated_photos, photo_folder
from imx500_picosam.geometry import crop_to_model_input, roi_from_box, to_model_range
from imx500_picosam.images import load_image_rgb


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "my-photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("chelsea.png", "coffee.png", "rocket.jpg"):
        shutil.copyfile(PHOTOS / name, folder / name)
    shutil.copyfile(PHOTOS / "astronaut.png", folder / "sub" / "astronaut.png")
    shutil.copyfile(PHOTOS / "china.jpg", folder / ".hidden.jpg")  # left out, as a dotfile
    (folder / "notes.txt").write_text("not a photo")
    return folder


@pytest.fixture(scope="module")
def rule_checkpoints(tmp_path_factory):
    from imx500_picosam.model.checkpoint import Provenance, save_checkpoint
    from imx500_picosam.model.network import build_model

    folder = tmp_path_factory.mktemp("rules")
    model = build_model("picosam3")
    return {rule: save_checkpoint(model, folder / rule / f"{rule}.weights.h5", Provenance("initialised"), roi_rule=rule)
            for rule in ("square", "warp")}


def test_a_folder_gives_the_asked_number_of_crops_spread_over_its_photos(photos):
    source = photo_folder(photos, crops=10)
    assert [Path(p).name for p, _ in source.photos] == ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png"]
    crops = source.load("square")
    assert crops.images.shape == (10, 96, 96, 3) and crops.images.dtype == np.float32
    assert 0.0 <= crops.images.min() and crops.images.max() < 1.0
    per_photo = {p: sum(1 for s, _ in crops.sources if s == p) for p, _ in source.photos}
    assert sorted(per_photo.values()) == [2, 2, 3, 3]  # the photos take turns
    few = photo_folder(photos, crops=3).load("square")
    assert len({s for s, _ in few.sources}) == 3  # fewer crops than photos: one from each of three
    again = photo_folder(photos, crops=10).load("square")
    np.testing.assert_array_equal(crops.images, again.images)  # deterministic


@pytest.mark.parametrize("rule", ["square", "warp"])
def test_crops_are_cut_with_the_rule_they_are_asked_for(photos, rule):
    crops = photo_folder(photos, crops=6).load(rule)
    for image, (path, box) in zip(crops.images, crops.sources):
        photo = load_image_rgb(Path(path))
        roi = roi_from_box(box, photo.shape[1], photo.shape[0], rule=rule)
        np.testing.assert_array_equal(image, to_model_range(crop_to_model_input(photo, roi)))
    other = photo_folder(photos, crops=6).load("warp" if rule == "square" else "square")
    assert not np.array_equal(crops.images, other.images)


def test_the_fingerprint_follows_photos_count_and_rule_not_the_folders_name(photos, tmp_path):
    key = photo_folder(photos, crops=8).fingerprint("square")
    assert key == photo_folder(photos, crops=8).fingerprint("square")
    assert key != photo_folder(photos, crops=9).fingerprint("square")
    assert key != photo_folder(photos, crops=8).fingerprint("warp")
    assert key != calibration.crops_fingerprint("calibration", rule="square")
    moved = tmp_path / "elsewhere"
    shutil.copytree(photos, moved)
    assert photo_folder(moved, crops=8).fingerprint("square") == key  # the same photos hit the same cache
    shutil.copyfile(PHOTOS / "flower.jpg", moved / "coffee.png")  # same name, other content
    assert photo_folder(moved, crops=8).fingerprint("square") != key


def test_coco_objects_are_a_seeded_choice_cut_around_their_own_boxes(tmp_path):
    chelsea = PHOTOS / "chelsea.png"
    boxes = {chelsea: [(135, 75, 75, 75), (60, 20, 300, 280), (10, 10, 50, 40)], PHOTOS / "coffee.png": [(100, 50, 200, 200)]}
    source = annotated_photos("ann.json", boxes, crops=3)
    crops = source.load("square")
    assert len(crops.images) == 3 and source.kind == "coco"
    everything = {(str(p), tuple(float(v) for v in b)) for p, bs in boxes.items() for b in bs}
    assert {(p, tuple(b)) for p, b in crops.sources} <= everything
    assert len(annotated_photos("ann.json", boxes, crops=50).load("square").images) == 4  # all there are
    assert annotated_photos("ann.json", boxes, crops=3).fingerprint("square") == source.fingerprint("square")
    assert annotated_photos("ann.json", boxes, crops=2).fingerprint("square") != source.fingerprint("square")


def test_bad_calibration_input_is_one_line(tmp_path):
    from imx500_picosam.errors import PicosamError

    (tmp_path / "empty").mkdir()
    with pytest.raises(PicosamError, match=r"empty: no photos in it \(\.jpg"):
        photo_folder(tmp_path / "empty")
    with pytest.raises(PicosamError, match="calibration folder not found"):
        photo_folder(tmp_path / "nowhere")
    with pytest.raises(PicosamError, match="calibration crops 0: give 1 to"):
        photo_folder(PHOTOS, crops=0)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(PicosamError, match="bad.jpg"):
        photo_folder(broken, crops=2).load("square")


def _fake_export(model, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(b"exported")


def _build(args, **kwargs):
    from imx500_picosam.cli import main

    return CliRunner().invoke(main, ["build", *args], **kwargs)


def test_the_cli_refuses_calibration_mistakes_before_any_work(tmp_path, photos):
    (tmp_path / "list.txt").write_text("x")
    (tmp_path / "ann.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    cases = [
        (["--calibration-crops", "10"], "go with --calibration PATH"),
        (["--calibration-images", str(photos)], "go with --calibration PATH"),
        (["--calibration", str(tmp_path / "list.txt")], "a folder of photos or COCO annotations .json, not a .txt file"),
        (["--calibration", str(tmp_path / "nowhere")], "nowhere: not found"),
        (["--calibration", str(tmp_path / "ann.json")], "need their images: add --calibration-images DIR"),
        (["--calibration", str(photos), "--calibration-images", str(photos)], "is a folder of photos"),
        (["--calibration", str(tmp_path / "empty")], "empty: no photos in it"),
        (["--calibration", str(photos), "--calibration-crops", "0"], "0 is not in the range"),
    ]
    for args, message in cases:
        result = _build([*args, "--build", str(tmp_path / "b")])
        assert result.exit_code != 0, args
        assert message in result.output and "Traceback" not in result.output, (args, result.output)
        assert sum("rror" in line for line in result.output.splitlines()) == 1, result.output  # one line
    assert not (tmp_path / "b").exists()  # refused before the build folder was made


def test_the_cli_reads_coco_annotations_with_their_images(tmp_path):
    pytest.importorskip("pycocotools")
    from hostile_inputs import tiny_coco
    from imx500_picosam.cli import _calibration_source

    path, images, _ = tiny_coco(tmp_path / "set")
    source = _calibration_source(path, images, 2)
    assert source.kind == "coco" and source.label == str(path) and source.crops == 2
    assert sorted(len(boxes) for _, boxes in source.photos) == [1, 2]
    assert len(source.load("square").images) == 2


def test_a_calibration_set_of_its_own_is_never_served_from_the_bundled_sets_cache(rule_checkpoints, photos, monkeypatch):
    """quantized_as_built with MCT replaced by a recorder: the crops it hands MCT are the
    source's, cut with the checkpoint's rule, and the cache key tells sets apart."""
    from imx500_picosam.firmware import quantize
    from imx500_picosam.firmware.quantize import QuantizationSettings, quantized_as_built

    handed = []

    def record(float_model, images, **kwargs):
        handed.append(images)
        return float_model

    monkeypatch.setattr(quantize, "quantize_model", record)
    monkeypatch.setattr(quantize, "export_quantized", _fake_export)
    monkeypatch.setattr(quantize, "_load_export", lambda path: "from the cache")
    checkpoint = rule_checkpoints["warp"]
    mine = QuantizationSettings(calibration=photo_folder(photos, crops=5))
    first = quantized_as_built(checkpoint, mine)
    assert not first.from_cache and first.result.calibration_crops == 5
    np.testing.assert_array_equal(handed[0], photo_folder(photos, crops=5).load("warp").images)
    assert quantized_as_built(checkpoint, mine).from_cache and len(handed) == 1  # same set: cached
    other = QuantizationSettings(calibration=photo_folder(photos, crops=6))
    assert not quantized_as_built(checkpoint, other).from_cache and len(handed[1]) == 6
    bundled = quantized_as_built(checkpoint)  # the default set: its own entry, the bundled crops
    assert not bundled.from_cache
    np.testing.assert_array_equal(handed[2], calibration.load_crops("calibration", rule="warp").images)
    paths = {quantize._cache_path(checkpoint, s.resolved(), ".keras") for s in (mine, other, QuantizationSettings())}
    assert len(paths) == 3


def test_the_build_report_records_the_calibration_set(rule_checkpoints, photos, tmp_path, monkeypatch):
    """build_firmware with MCT, the converter and the packager replaced: the report and the
    progress lines name the set, its crops and the rule they were cut with."""
    from imx500_picosam.firmware import build as build_module, convert, package, quantize
    from imx500_picosam.firmware.build import BuildOptions, build_firmware, summary_lines
    from imx500_picosam.firmware.convert import ConversionResult, MemoryReport

    monkeypatch.setattr(quantize, "quantize_model", lambda float_model, images, **kw: float_model)
    monkeypatch.setattr(quantize, "export_quantized", _fake_export)

    def fake_convert(model_path, output_dir, on_line=None):
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        packer = Path(output_dir) / "packerOut.zip"
        packer.write_bytes(b"zip")
        memory = MemoryReport(1, 8 * 2**20, 1, 1, True, "1%")
        return ConversionResult(Path(output_dir), packer, Path(output_dir) / "log", "3.19.2", memory)

    monkeypatch.setattr(convert, "convert", fake_convert)
    monkeypatch.setattr(package, "package_rpk", lambda *args: package.PackagingResult("skipped", "not here"))
    heard = []
    options = BuildOptions(checkpoint=rule_checkpoints["warp"].weights_path, output_dir=tmp_path / "build",
                           calibration=photo_folder(photos, crops=7))
    outcome = build_firmware(options, progress=heard.append)
    quant = outcome.report["quantization"]
    assert quant["calibration_crops"] == 7 and len(quant["calibration_photos"]) == 4
    assert {Path(p).parent for p in quant["calibration_photos"]} == {photos, photos / "sub"}
    facts = quant["calibration_source"]
    assert facts["kind"] == "photos" and facts["path"] == str(photos) and facts["crops"] == 7
    assert facts["photos"] == 4 and facts["requested_crops"] == 7
    assert facts["fingerprint"] == photo_folder(photos, crops=7).fingerprint("warp")
    assert outcome.report["model"]["roi_rule"] == "warp"
    assert any(f"7 crops from 4 photos of {photos}, ROI rule warp" in line for line in heard)
    assert any(f"7 calibration crops from {photos}" in line for line in summary_lines(outcome.report))
    written = json.loads((tmp_path / "build" / "build_report.json").read_text())
    assert written["quantization"]["calibration_source"] == facts

    default = build_firmware(BuildOptions(checkpoint=rule_checkpoints["square"].weights_path,
                                          output_dir=tmp_path / "default"))
    facts = default.report["quantization"]["calibration_source"]
    assert facts["kind"] == "bundled" and facts["crops"] == 80 and default.report["quantization"]["calibration_crops"] == 80
    assert facts["fingerprint"] == calibration.crops_fingerprint("calibration", rule="square")
    assert default.report["quantization"]["calibration_photos"] == sorted(
        {s for s, _ in calibration.load_crops("calibration", rule="square").sources})
