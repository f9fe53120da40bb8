"""Issue 15, finding 8: teacher cache entries are keyed by what the teacher was asked, not by ids alone."""

import copy
import json

import numpy as np
import pytest

from imx500_picosam.learn.data import load_instances
from imx500_picosam.errors import PicosamError
from imx500_picosam.geometry import MODEL_INPUT_SIZE, roi_from_box
from imx500_picosam.learn.teacher import TeacherOutput
from imx500_picosam.learn.teacher_cache import TeacherCache, fill_cache

from hostile_inputs import tiny_coco


class CountingTeacher:
    """Answers with logits that encode the box it was given, and counts its calls."""

    def __init__(self, identity="fake-teacher:1"):
        self.identity, self.calls = identity, 0

    def predict(self, image, box_xywh, rule):
        self.calls += 1
        logits = np.full((MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), float(sum(box_xywh)), np.float32)
        return TeacherOutput(logits, 0.9, roi_from_box(box_xywh, image.shape[1], image.shape[0], rule=rule))


def _instances(tmp_path, doc, images, name):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return load_instances(path, images)


@pytest.fixture
def filled(tmp_path):
    """The tiny set, its teacher cache filled by a counting teacher: (images, doc, instances, cache, teacher)."""
    path, images, doc = tiny_coco(tmp_path / "set")
    instances = load_instances(path, images)
    cache, teacher = TeacherCache(tmp_path / "cache"), CountingTeacher()
    fill_cache(instances, teacher, cache, progress=False)
    assert teacher.calls == 3
    return images, doc, instances, cache, teacher


def test_moved_boxes_under_the_same_ids_are_recomputed(tmp_path, filled):
    images, doc, instances, cache, teacher = filled
    assert fill_cache(instances, teacher, cache, progress=False).images_reused == 2 and teacher.calls == 3

    moved = copy.deepcopy(doc)
    moved["annotations"][0]["bbox"] = [6, 5, 20, 10]  # same id 10, the box one pixel to the right
    moved_instances = _instances(tmp_path, moved, images, "moved.json")
    with pytest.raises(PicosamError, match="annotation 10 was made for another box or photo"):
        cache.lookup(moved_instances.instances[0])  # never the stale logits
    summary = fill_cache(moved_instances, teacher, cache, progress=False)
    assert (summary.images_computed, summary.images_reused, summary.images_repaired) == (1, 1, 1)
    assert teacher.calls == 4
    assert cache.lookup(moved_instances.instances[0]).logits[0, 0] == 6 + 5 + 20 + 10
    assert stale_free(cache, moved_instances)


def test_another_photo_under_the_same_image_id_is_recomputed(tmp_path, filled):
    images, doc, instances, cache, teacher = filled
    swapped = copy.deepcopy(doc)
    (images / "c.png").write_bytes((images / "a.png").read_bytes())
    swapped["images"][0]["file_name"] = "c.png"  # image id 1 is now another file
    summary = fill_cache(_instances(tmp_path, swapped, images, "swapped.json"), teacher, cache, progress=False)
    assert summary.images_computed == 1 and teacher.calls == 4


def test_prompt_keys_name_the_teacher(tmp_path):
    path, images, _ = tiny_coco(tmp_path / "set")
    instance = load_instances(path, images).instances[0]
    one, other = TeacherCache(tmp_path / "one"), TeacherCache(tmp_path / "other")
    one.bind("fake-teacher:1", "square")
    other.bind("fake-teacher:2", "square")
    assert one.prompt_key(instance) != other.prompt_key(instance)
    assert TeacherCache(tmp_path / "one").prompt_key(instance) == one.prompt_key(instance)  # read back from cache.json


def stale_free(cache, instances):
    return cache.stale(instances) == []
