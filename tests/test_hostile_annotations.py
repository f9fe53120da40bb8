"""Issue 15, findings 1-2: hostile COCO / LVIS files are counted and skipped, never a crash."""

import copy
import json
import math

import numpy as np
import pytest

from imx500_picosam.learn.data import NO_AUGMENTATION, iterate_crops, load_instances
from imx500_picosam.errors import PicosamError

from hostile_inputs import tiny_coco


@pytest.fixture
def tiny(tmp_path):
    return tiny_coco(tmp_path)


def _load_with(tmp_path, doc, images, name="changed.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return load_instances(path, images)


def test_tiny_set_is_fully_usable_and_masks_agree(tiny):
    path, images, _ = tiny
    instances = load_instances(path, images)
    assert len(instances.instances) == 3 and not instances.skipped
    masks = [instances.decode_mask(inst) for inst in instances.instances]
    assert masks[0].shape == (30, 40) and masks[0].sum() > 0
    assert np.array_equal(masks[1], masks[2]) and masks[1].sum() == 11 * 14


BAD_ANNOTATIONS = {
    # finding 1: pycocotools allocates without checking (segfault / ~20 GB before this change)
    "polygon at 1e8": ({"segmentation": [[0, 0, 1e8, 0, 1e8, 1e8]]}, "with polygon coordinates far outside the image"),
    "huge RLE size": ({"segmentation": {"size": [100000, 100000], "counts": [10 ** 10]}},
                      "with an RLE size that differs from its image record"),
    # finding 2: raw tracebacks (or silently wrong masks) before this change
    "4-number polygon": ({"segmentation": [[1, 1, 5, 5]]}, "with a malformed polygon"),
    "odd polygon": ({"segmentation": [[1, 1, 5, 5, 9, 1, 3]]}, "with a malformed polygon"),
    "empty polygon": ({"segmentation": [[]]}, "with a malformed polygon"),
    "NaN polygon": ({"segmentation": [[1, 1, 5, float("nan"), 9, 1]]}, "non-finite polygon coordinate"),
    "string polygon": ({"segmentation": [["1", 1, 5, 5, 9, 1]]}, "non-finite polygon coordinate"),
    "RLE counts short": ({"segmentation": {"size": [30, 40], "counts": [5, 10]}}, "do not cover height x width"),
    "RLE negative count": ({"segmentation": {"size": [30, 40], "counts": [-5, 1205]}}, "not non-negative integers"),
    "RLE corrupt string": ({"segmentation": {"size": [30, 40], "counts": "\x7f\x7f~"}}, "corrupt compressed RLE"),
    "RLE unterminated string": ({"segmentation": {"size": [30, 40], "counts": "0o"}}, "corrupt compressed RLE"),
    "RLE without counts": ({"segmentation": {"size": [30, 40]}}, "RLE without counts"),
    "segmentation a number": ({"segmentation": 7}, "neither polygons nor RLE"),
    "missing category_id": ({"category_id": None}, "without an integer category_id"),
    "infinite box": ({"bbox": [0, 0, math.inf, 10]}, "non-finite box"),
    "string box": ({"bbox": ["a", 0, 5, 5]}, "non-finite box"),
    "NaN area": ({"area": float("nan")}, "area"),
    "missing id": ({"id": None}, "annotations without an integer id"),
    "image_id a list": ({"image_id": [1]}, "with an unknown image id"),
}


def _first_record_changed(tiny, tmp_path, section, change, reason):
    """Load the tiny set with ``change`` applied to its first ``section`` record (None deletes a key);
    what that record held is skipped for ``reason``, the rest loads."""
    _, images, doc = tiny
    doc = copy.deepcopy(doc)
    record = dict(doc[section][0], **change)
    doc[section][0] = {k: v for k, v in record.items() if v is not None}
    instances = _load_with(tmp_path, doc, images)
    assert [i.annotation_id for i in instances.instances] == [11, 12]
    assert any(reason in why for why in instances.skipped), instances.skipped
    return instances


@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS))
def test_bad_annotation_is_counted_and_skipped(case, tiny, tmp_path):
    instances = _first_record_changed(tiny, tmp_path, "annotations", *BAD_ANNOTATIONS[case])
    assert sum(instances.skipped.values()) == 1
    for inst in instances.instances:  # what is kept decodes
        instances.decode_mask(inst)


BAD_IMAGES = {
    "NaN width": ({"width": float("nan")}, "insane width/height"),
    "string height": ({"height": "30"}, "insane width/height"),
    "100000x100000": ({"width": 100000, "height": 100000}, "insane width/height"),
    "size differs from the file": ({"width": 41}, "size differs from its image record"),
    "no id": ({"id": None}, "image records without an integer id"),
    "absolute file name": ({"file_name": "/etc/passwd"}, "no usable file name"),
    "NUL in file name": ({"file_name": "a\x00.png"}, "no usable file name"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_image_record_is_counted_and_skipped(case, tiny, tmp_path):
    _first_record_changed(tiny, tmp_path, "images", *BAD_IMAGES[case])


@pytest.mark.parametrize("content, reason", [(b"", "empty or not a readable image"),
                                             (b"not an image at all", "empty or not a readable image")])
def test_empty_or_corrupt_photo_is_skipped_at_load_time(content, reason, tiny):
    path, images, _ = tiny
    (images / "a.png").write_bytes(content)
    instances = load_instances(path, images)
    assert [i.annotation_id for i in instances.instances] == [11, 12]
    assert instances.skipped == {"whose image file is empty or not a readable image": 1}


def test_photo_that_breaks_mid_epoch_is_counted_not_raised(tiny):
    path, images, _ = tiny
    instances = load_instances(path, images)
    data = (images / "b.jpg").read_bytes()
    (images / "b.jpg").write_bytes(data[: len(data) // 3])  # header intact, pixels truncated
    examples = list(iterate_crops(instances, [0, 1, 2], NO_AUGMENTATION, rule="square"))
    assert [e["annotation_id"] for e in examples] == [10]
    assert instances.skipped == {"whose image failed to decode mid-epoch": 2}


def test_duplicate_annotation_ids_are_an_error(tiny, tmp_path):
    path, images, doc = tiny
    doc["annotations"][2]["id"] = 11
    with pytest.raises(PicosamError, match="annotation id 11 is listed twice") as err:
        _load_with(tmp_path, doc, images)
    assert "\n" not in str(err.value)


def test_duplicate_image_ids_are_an_error(tiny, tmp_path):
    path, images, doc = tiny
    doc["images"][1]["id"] = 1
    with pytest.raises(PicosamError, match="image id 1 is listed twice"):
        _load_with(tmp_path, doc, images)


def test_lvis_file_without_categories_loads(tiny, tmp_path):
    path, images, doc = tiny
    for image in doc["images"]:
        image["coco_url"] = "http://images.cocodataset.org/val2017/" + image.pop("file_name")
        image["not_exhaustive_category_ids"] = []
    del doc["categories"]
    instances = _load_with(tmp_path, doc, images)
    assert instances.format == "lvis" and len(instances.instances) == 3
    assert instances.decode_mask(instances.instances[0]).sum() > 0


@pytest.mark.parametrize("text, message", [
    ("[" * 100000 + "]" * 100000, "not usable JSON (RecursionError"),
    ('{"images": [{"id": 1' + "0" * 5000 + "}]}", "not usable JSON (ValueError"),
])
def test_unusable_json_is_one_line(text, message, tmp_path, tiny):
    path = tmp_path / "deep.json"
    path.write_text(text)
    with pytest.raises(PicosamError) as err:
        load_instances(path, tiny[1])
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_donor_photo_that_breaks_mid_epoch_is_counted_not_raised(tiny):
    from imx500_picosam.learn.data import Augmentation

    path, images, _ = tiny
    instances = load_instances(path, images)
    data = (images / "b.jpg").read_bytes()
    (images / "b.jpg").write_bytes(data[: len(data) // 3])
    examples = list(iterate_crops(instances, [0] * 12, Augmentation(copy_paste=1.0), rule="square"))
    assert len(examples) == 12  # every example of a.png, pasted or not
    assert instances.skipped["donor photos that failed to decode mid-epoch"] > 0
