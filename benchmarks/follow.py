"""Benchmark following a moving prompt through the emulator with a lagging sensor ROI.

    .venv/bin/python benchmarks/follow.py [--checkpoint C] [--frames 40] [--seeds 0,1,2]

Two pans over a bundled photograph (the README's 8 px/frame pan of chelsea.png, and a slow
2 px/frame one), the README's prompt ``150,60,200,200`` with ``--follow``, the emulator's ROI
latency 0, 1, 2, 3 and jittered 0-3 frames, seeds 0-2: for every run it prints the share of
frames with output that show a mask, the frames whose mask was drawn into an ROI other than
the one the network really ran on (the emulator records it; the session never sees that
record) and how far, in frame pixels, such a mask lands from where it belongs, the measured
ROI-switch latency (median / max) against the true one, the attribution counts, and the
frames on which the track was reported lost. The engine is the checkpoint quantized as
``make rpk`` does, run as MCT's INT8 TFLite export (``picosam demo --emulate``'s default).
"""

import argparse
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402

from imx500_picosam.firmware.engines import load_engine  # noqa: E402
from imx500_picosam.model.resolve import resolve_checkpoint  # noqa: E402
from imx500_picosam.runtime import EmulatorBackend, Session, open_source  # noqa: E402
from imx500_picosam.runtime.attribution import AttributionSettings  # noqa: E402

PHOTO = Path(__file__).resolve().parents[1] / "imx500_picosam" / "calibration_data" / "photos" / "chelsea.png"
BOX = (150, 60, 200, 200)


def write_pan(path: Path, step: int, frames: int) -> Path:
    """The README's panning video (``step`` pixels per frame)."""
    photo = cv2.resize(cv2.imread(str(PHOTO)), (900, 600))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (480, 360))
    for i in range(frames):
        out.write(photo[100:460, 100 + step * i : 580 + step * i])
    out.release()
    return path


class RecordingEmulator(EmulatorBackend):
    """The emulator, recording the ROI its network really ran on for every frame."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.used = []

    def capture(self):
        capture = super().capture()
        if capture is not None:
            self.used.append(self._roi)
        return capture


def edge_offset(a, b) -> int:
    return max(abs(a.x0 - b.x0), abs(a.y0 - b.y0), abs(a.x1 - b.x1), abs(a.y1 - b.y1))


def run(engine, video: Path, latency, seed: int, frames: int, settings: AttributionSettings = AttributionSettings()):
    backend = RecordingEmulator(open_source(str(video)), engine, roi_latency=latency, seed=seed)
    with Session(backend, boxes=[BOX], follow=True, attribution=settings) as session:
        results = []
        while len(results) < frames and (step := session.step()) is not None:
            results.append(step.result)
        kpis = session.kpis()
    wrong = [edge_offset(r.roi_sensor, backend.used[r.frame]) for r in results
             if r.mask is not None and r.roi_sensor != backend.used[r.frame]]
    with_mask = sum(r.mask is not None for r in results)
    lost = sum(r.track == "lost" for r in results)
    return len(results), with_mask, wrong, kpis["attribution"], lost


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", default="8,2", help="pan speeds, pixels per frame")
    parser.add_argument("--latencies", default="0,1,2,3,0-3", help="fixed ROI latencies, or LOW-HIGH jittered")
    parser.add_argument("--same-answer-px", type=float, default=None, help="override AttributionSettings")
    parser.add_argument("--same-answer-cells", type=float, default=None, help="override AttributionSettings")
    args = parser.parse_args()
    overrides = {name: value for name, value in (("same_answer_px", args.same_answer_px),
                                                 ("same_answer_cells", args.same_answer_cells)) if value is not None}
    settings = AttributionSettings(**overrides)
    latencies = [tuple(int(v) for v in item.split("-")) if "-" in item else int(item)
                 for item in args.latencies.split(",")]
    engine = load_engine(resolve_checkpoint(args.checkpoint), "tflite")
    seeds = [int(s) for s in args.seeds.split(",")]
    totals = {"frames": 0, "masks": 0, "wrong": 0, "runs": 0}
    worst_share, worst_offset = 1.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for step in (int(v) for v in args.steps.split(",")):
            video = write_pan(Path(tmp) / f"pan{step}.avi", step, args.frames)
            for latency in latencies:
                for seed in seeds:
                    n, masks, wrong, attribution, lost = run(engine, video, latency, seed, args.frames, settings)
                    share = masks / n
                    worst_share = min(worst_share, share)
                    worst_offset = max([worst_offset] + wrong)
                    totals["frames"] += n
                    totals["masks"] += masks
                    totals["wrong"] += len(wrong)
                    totals["runs"] += 1
                    measured = attribution["roi_switch_latency_frames"]
                    print(f"pan {step} px/frame  latency {str(latency):6}  seed {seed}: masks {masks}/{n} "
                          f"({100 * share:.0f} %)  wrong ROI {len(wrong)} (max {max(wrong, default=0)} px)  "
                          f"latency measured median {measured['median']} max {measured['max']} (n {measured['n']})  "
                          f"lost {lost}  {attribution['frames']}")
    print(f"{totals['runs']} runs, {totals['frames']} frames: {totals['masks']} masks "
          f"({100 * totals['masks'] / totals['frames']:.1f} %), lowest per run {100 * worst_share:.0f} %; "
          f"masks in another ROI than the one used: {totals['wrong']} (furthest {worst_offset} px)")


if __name__ == "__main__":
    main()
