"""Benchmark `picosam evaluate` on a file in COCO's own order: prompts per second, float + box.

    .venv/bin/python benchmarks/evaluate.py [--subset ../shared/data/coco2017-train-subset] [--images 40]
                                            [--methods float,box] [--batch-size 32]

COCO lists annotations by id, not by image, so a large file visits its photos in no order.
This script takes ``--images`` photos of the shared COCO subset, shuffles their annotations
(seeded) into a temporary file, and times :func:`evaluate_methods` with the shipped
checkpoint at jitter 0 and at the default jitters 0, 0.1, 0.3. Model loading is not timed;
image decoding, masks, crops, the model, IoUs, the JSON lines and the bootstrap are. Prints
prompts per second of wall time and per CPU second (the machine may be shared), and the
process's peak resident memory.
"""

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_coco_ordered(subset: Path, images: int, seed: int, out: Path) -> Path:
    """``images`` photos of ``subset`` with their annotations shuffled, as a COCO file at ``out``."""
    data = json.loads((subset / "annotations.json").read_text())
    rng = random.Random(seed)
    keep = set(rng.sample(sorted(image["id"] for image in data["images"]), images))
    annotations = [a for a in data["annotations"] if a["image_id"] in keep]
    rng.shuffle(annotations)
    out.write_text(json.dumps(dict(data, images=[i for i in data["images"] if i["id"] in keep], annotations=annotations)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=Path, default=ROOT.parent / "shared" / "data" / "coco2017-train-subset")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="float,box")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--keep", type=Path, default=None, help="Also write the shuffled annotation file here.")
    args = parser.parse_args()

    from imx500_picosam.learn.data import load_instances
    from imx500_picosam.learn.evaluate import build_methods, evaluate_methods

    with tempfile.TemporaryDirectory() as tmp:
        path = write_coco_ordered(args.subset, args.images, args.seed, args.keep or Path(tmp) / "annotations.json")
        instances = load_instances(path, args.subset / "images")
        ids = [a["image_id"] for a in json.loads(path.read_text())["annotations"]]
        runs = sum(1 for a, b in zip(ids, ids[1:]) if a != b) + 1
        print(f"{path}: {len(instances.instances)} instances on {len(instances.image_ids())} images, "
              f"{runs} runs of the same image in file order (COCO order, not grouped)")
        methods = build_methods(args.methods.split(","), None, None)
        evaluate_methods(instances.subset(instances.image_ids()[:2]), methods, (0.0,), progress=False)  # warm-up
        for jitters in ((0.0,), (0.0, 0.1, 0.3)):
            wall, cpu = time.perf_counter(), time.process_time()
            evaluate_methods(instances, methods, jitters, progress=False, compare=[tuple(args.methods.split(",")[:2])],
                             per_instance_path=Path(tmp) / "per_instance.jsonl", batch_size=args.batch_size)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            prompts = len(instances.instances) * len(jitters)
            print(f"evaluate --methods {args.methods} --jitter {','.join(f'{j:g}' for j in jitters)}: {prompts} prompts "
                  f"in {wall:.1f} s = {prompts / wall:.1f} prompts/s wall, {prompts / cpu:.1f} prompts per CPU second "
                  f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
