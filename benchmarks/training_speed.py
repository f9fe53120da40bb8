"""Where a training step's time goes on this CPU, and end-to-end training crops/s.

    .venv/bin/python benchmarks/training_speed.py [--annotations A --images I] [--steps 40] [--batch-size 32]

Default data: the shared COCO train2017 subset (../shared/data/coco2017-train-subset), as the
accuracy work trains on it. Prints, per crop: JPEG decode, polygon decode, ROI crop (image +
mask), augmentation; per step: the optimiser step alone (float32 and mixed bfloat16, and
whether XLA's jit_compile can compile it); then `picosam train`'s own crops/s over --steps
steps at --batch-size (data loading, crops, augmentation and the step included; photos are
decoded once per run and kept). Run it on an otherwise idle machine: figures are wall time.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SUBSET = ROOT.parent / "shared" / "data" / "coco2017-train-subset"


def per_item(label, fn, items):
    started = time.perf_counter()
    for item in items:
        fn(item)
    ms = (time.perf_counter() - started) / len(items) * 1000
    print(f"{label:34s} {ms:7.2f} ms per crop")
    return ms


def step_time(precision: str, batch: int, jit: bool = False) -> float:
    import numpy as np
    import tensorflow as tf

    from imx500_picosam.model.network import build_model
    from imx500_picosam.learn.train import distillation_loss

    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(precision)
    try:
        model = build_model("picosam3")
        optimizer = tf.keras.optimizers.AdamW(1e-3, weight_decay=0.01)
        rng = np.random.default_rng(0)
        x = tf.constant(rng.random((batch, 96, 96, 3), dtype=np.float32))
        m = tf.constant((rng.random((batch, 96, 96, 1)) > 0.5).astype(np.float32))

        def step(x, m):
            with tf.GradientTape() as tape:
                logits = tf.cast(model(x, training=True), tf.float32)
                loss, _ = distillation_loss(logits, m, m, tf.zeros(batch), "supervised", 0.4)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        fn = tf.function(step, jit_compile=jit)
        for _ in range(3):
            fn(x, m)
        started = time.perf_counter()
        for _ in range(10):
            fn(x, m).numpy()
        return (time.perf_counter() - started) / 10
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, default=SUBSET / "annotations.json")
    parser.add_argument("--images", type=Path, default=SUBSET / "images")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import numpy as np

    from imx500_picosam.images import load_image_rgb
    from imx500_picosam.learn.data import augment_colour, crop_instance, load_instances
    from imx500_picosam.learn.train import TrainConfig, train

    instances = load_instances(args.annotations, args.images)
    picked = [instances.instances[i] for i in np.random.default_rng(0).permutation(len(instances.instances))[:200]]
    print(f"data: {args.annotations} ({len(instances.instances)} instances); timing 200 random instances")
    per_item("JPEG decode (Pillow)", lambda inst: load_image_rgb(inst.image_path), picked[:60])
    images = {inst.image_path: load_image_rgb(inst.image_path) for inst in picked}
    masks = {inst.annotation_id: instances.decode_mask(inst) for inst in picked}
    per_item("polygon decode (pycocotools)", instances.decode_mask, picked)
    rng = np.random.default_rng(1)
    per_item("ROI crop, image + mask, jitter 0.1",
             lambda inst: crop_instance(images[inst.image_path], masks[inst.annotation_id], inst.box_xywh, 0.1, rng, rule="warp"), picked)
    crop = crop_instance(images[picked[0].image_path], masks[picked[0].annotation_id], picked[0].box_xywh, rule="warp")
    per_item("colour augmentation", lambda _: augment_colour(crop.image, 0.2, rng), picked)

    batch = args.batch_size
    for precision in ("float32", "mixed_bfloat16"):
        seconds = step_time(precision, batch)
        print(f"optimiser step alone, {precision:15s} {seconds * 1000:7.1f} ms per step of {batch} = "
              f"{batch / seconds:.1f} crops/s")
    try:
        step_time("float32", batch, jit=True)
        print("XLA jit_compile: compiles")
    except Exception as err:  # noqa: BLE001 - report why XLA cannot be used, whatever TF raises
        print(f"XLA jit_compile: does not compile on this CPU build ({str(err).splitlines()[0][:120]})")

    for precision in ("float32", "mixed_bfloat16"):
        with tempfile.TemporaryDirectory() as tmp:
            warm = TrainConfig(mode="supervised", steps=3, batch_size=batch, warmup_steps=1, checkpoint_every=10_000,
                               precision=precision)
            train(instances, Path(tmp), warm, progress=False)  # tracing and first batches
            timed = TrainConfig(mode="supervised", steps=3 + args.steps, batch_size=batch, warmup_steps=1,
                                checkpoint_every=10_000, precision=precision)
            result = train(instances, Path(tmp), timed, progress=False)
        print(f"picosam train, batch {batch}, {precision:15s} {result.crops_per_second:.1f} crops/s over {args.steps} steps "
              f"(data, crops, augmentation and the step included)")


if __name__ == "__main__":
    main()
