"""Soak tests of long sessions; prints figures, asserts nothing about time.

    .venv/bin/python benchmarks/soak.py demo [--frames 10000] [--checkpoint C] [--engine tflite|keras]
    .venv/bin/python benchmarks/soak.py teacher-cache --teacher DIR [--images 12] [--kills 3]

``demo``: an emulated `picosam demo --emulate --follow` session of ``--frames`` frames: a
480x360 view panning back and forth across a bundled photo (an endless synthetic video), one
prompt that follows its mask, and an ROI that takes effect 0-3 frames after it is asked for
(drawn per change, as the sensor's lag). Prints the process's resident memory (RSS, from
/proc) and the per-frame time (median and 90th percentile, the whole `Session.step`) over
the first and the last 1,000 frames after a 200-frame warm-up, and the attribution counts.

``teacher-cache``: `picosam teacher cache` on the first ``--images`` photos of the shared COCO
subset, SIGKILLed ``--kills`` times at random moments and started again each time, against
one uninterrupted build: prints whether every entry (annotation ids, prompt keys, fp16
logits, scores) is equal, and what each restart found already done.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "imx500_picosam" / "calibration_data" / "photos" / "chelsea.png"
COCO_SUBSET = ROOT.parent / "shared" / "data" / "coco2017-train-subset"


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory (VmRSS) or its peak (VmHWM) of this process, MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _window(times_s):
    ms = [t * 1000.0 for t in times_s]
    return statistics.median(ms), float(np.percentile(ms, 90))


def soak_demo(args) -> None:
    import cv2
    from tqdm import tqdm

    from imx500_picosam.firmware.engines import load_engine
    from imx500_picosam.images import load_image_rgb
    from imx500_picosam.model.resolve import resolve_checkpoint
    from imx500_picosam.runtime import EmulatorBackend, Session
    from imx500_picosam.runtime.backends import DEMO_ENGINES
    from imx500_picosam.runtime.emulator import FrameSource

    class PanningSource(FrameSource):
        """An endless video: a 480x360 window sliding 4 px a frame across a 900x600 photo and back."""

        kind = "video"
        description = f"{PHOTO.name}, panning"

        def __init__(self):
            self.photo = cv2.resize(cv2.cvtColor(load_image_rgb(PHOTO), cv2.COLOR_RGB2BGR), (900, 600))
            self.index = 0

        def read(self):
            span = 900 - 480
            x = self.index * 4 % (2 * span)
            x = x if x <= span else 2 * span - x
            self.index += 1
            return self.photo[120:480, x:x + 480].copy()

        def size(self):
            return (480, 360)

    checkpoint = resolve_checkpoint(args.checkpoint)
    engine = load_engine(checkpoint, DEMO_ENGINES[args.engine])
    backend = EmulatorBackend(PanningSource(), engine, roi_latency=(0, 3), seed=0)
    print(f"checkpoint {checkpoint.describe()}; engine {args.engine}; {os.cpu_count()} CPU cores; "
          f"{args.frames} frames, ROI latency 0-3 frames, following prompt")
    warm, window = 200, 1000
    start_box = (80.0, 40.0, 260.0, 300.0)
    times, cpu, rss, areas, reprompts = [], [], {}, [], 0
    with Session(backend, boxes=[start_box], follow=True) as session:
        for frame in tqdm(range(args.frames), desc="soak demo", unit="frame"):
            box = session.prompts[0].box
            if frame % args.reprompt_every == 0 and frame or min(box[2], box[3]) < 24:
                # What a user does when the followed box drifted off or shrank: draw it again.
                session.set_boxes([start_box])
                reprompts += 1
            started, started_cpu = time.perf_counter(), time.process_time()
            step = session.step()
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            if step.result.mask_area is not None:
                areas.append(step.result.mask_area)
            if frame in (warm, warm + window - 1, args.frames - window, args.frames - 1):
                rss[frame] = rss_mb()
        kpis = session.kpis()
    end = args.frames - window
    for label, (a, b) in (("first", (warm, warm + window)), ("last", (end, args.frames))):
        wall, proc = _window(times[a:b]), _window(cpu[a:b])
        print(f"{label} window, frames {a}-{b - 1}: per-frame wall {wall[0]:.2f} ms median ({wall[1]:.2f} p90), "
              f"CPU {proc[0]:.2f} ms median ({proc[1]:.2f} p90); RSS {rss[a]:.1f} MB at frame {a}, "
              f"{rss[b - 1]:.1f} MB at frame {b - 1}")
    first_wall, last_wall = _window(times[warm:warm + window])[0], _window(times[end:])[0]
    first_cpu, last_cpu = _window(cpu[warm:warm + window])[0], _window(cpu[end:])[0]
    print(f"first -> last window: RSS {rss[args.frames - 1] - rss[warm]:+.1f} MB (frame {warm} -> {args.frames - 1}), "
          f"median per-frame wall time {100.0 * (last_wall / first_wall - 1.0):+.1f} %, "
          f"CPU time {100.0 * (last_cpu / first_cpu - 1.0):+.1f} %; peak RSS {rss_mb('VmHWM'):.1f} MB")
    print(f"frames with a mask {len(areas)} of {args.frames}; prompt drawn again {reprompts} times; "
          f"attribution {kpis.get('attribution')}")


def _cache_entries(folder: Path):
    entries = {}
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as data:
            entries[path.name] = {key: data[key].copy() for key in data.files}
    return entries


def soak_teacher_cache(args) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "imx500_picosam", "teacher", "cache", "--annotations",
               str(COCO_SUBSET / "annotations.json"), "--images", str(COCO_SUBSET / "images"),
               "--teacher", str(args.teacher), "--max-images", str(args.images)]
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="soak-teacher-") as tmp:
        straight, killed = Path(tmp) / "straight", Path(tmp) / "killed"
        started = time.perf_counter()
        subprocess.run(command + ["--out", str(straight)], env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - started
        print(f"uninterrupted build: {len(list(straight.glob('*.npz')))} image files in {seconds:.0f} s")
        for kill in range(args.kills):
            before = len(list(killed.glob("*.npz"))) if killed.exists() else 0
            process = subprocess.Popen(command + ["--out", str(killed)], env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            # Wait until this run has written at least one more file, then kill it at a random moment.
            while len(list(killed.glob("*.npz"))) <= before and process.poll() is None:
                time.sleep(0.05)
            time.sleep(float(rng.uniform(0.0, 2.0)))
            if process.poll() is not None:
                print(f"kill {kill + 1}: the run ended before the kill")
                continue
            process.send_signal(signal.SIGKILL)
            process.wait()
            print(f"kill {kill + 1}: SIGKILL after {len(list(killed.glob('*.npz')))} image files "
                  f"(lock left by pid {process.pid}: {(killed / '.picosam.lock').is_file()})")
        done = subprocess.run(command + ["--out", str(killed)], env=env, capture_output=True, text=True, check=True)
        print("resumed run:", done.stdout.strip().splitlines()[-1])
        print("  ", " ".join(line for line in done.stderr.splitlines() if "taking over" in line)[:300])
        expected, got = _cache_entries(straight), _cache_entries(killed)
        equal = sorted(expected) == sorted(got) and all(
            sorted(expected[name]) == sorted(got[name])
            and all(np.array_equal(expected[name][key], got[name][key]) for key in expected[name])
            for name in expected)
        leftovers = [p.name for p in killed.iterdir() if p.name.startswith(".")]
        print(f"entries equal to the uninterrupted build: {equal} ({len(got)} image files, "
              f"{sum(len(e['annotation_ids']) for e in got.values())} instances); files left over: {leftovers}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo")
    demo.add_argument("--frames", type=int, default=10_000)
    demo.add_argument("--checkpoint", type=Path, default=None)
    demo.add_argument("--engine", default="tflite")
    demo.add_argument("--reprompt-every", type=int, default=500,
                      help="Draw the starting box again every N frames (and whenever the followed box shrinks "
                           "under 24 px).")
    cache = commands.add_parser("teacher-cache")
    cache.add_argument("--teacher", type=Path, required=True)
    cache.add_argument("--images", type=int, default=12)
    cache.add_argument("--kills", type=int, default=3)
    cache.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "demo":
        if args.frames < 2400:
            parser.error("--frames: at least 2400 (a 200-frame warm-up and two 1,000-frame windows)")
        soak_demo(args)
    else:
        soak_teacher_cache(args)


if __name__ == "__main__":
    main()
