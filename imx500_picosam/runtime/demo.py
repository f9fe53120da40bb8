"""``picosam demo``: an interactive OpenCV window, or a headless writer, over a :class:`Session`.

Interactive: drag a box to prompt (shift+drag adds another prompt), ``r`` resets to the
whole frame, ``q`` or Esc quits; the window shows each prompt's latest mask, its ROI, the
loop's FPS and the network's runtime. It needs an OpenCV build with highgui and a display.

Headless: every frame becomes one JSON line in ``OUT/frames.jsonl`` (prompt, ROI in sensor
and frame pixels, mask area, host latency, DNN runtime, attribution, track state) and, when it has a mask, a PNG at
the frame's size in ``OUT/masks/``; ``OUT/run.json`` says what ran.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import cv2
import numpy as np

from ..atomic import atomic_path, write_json
from ..errors import PicosamError
from .decode import OverlayStyle, draw_mask, draw_roi
from .session import Session

WINDOW = "picosam demo"
QUIT_KEYS = (ord("q"), 27)
RESET_KEY = ord("r")
MIN_DRAG_PIXELS = 3
PROMPT_COLOURS = ((0, 200, 255), (255, 160, 0), (80, 220, 80), (220, 80, 220), (60, 60, 255))


# -- headless --------------------------------------------------------------------------------

def run_headless(session: Session, out_dir: Path, frames: Optional[int], run_info: Dict[str, object],
                 echo: Callable[[str], None] = print) -> int:
    """Write masks and JSON lines for ``frames`` frames (default: a video to its end, one
    frame per prompt for a still image, a camera until Ctrl-C). Returns the frames written."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    if frames is None and session.backend.is_still:
        frames = len(session.prompts)
    frame_mask: Optional[np.ndarray] = None  # one frame-sized uint8 image, reused for every PNG
    written = masks = 0
    with atomic_path(out_dir / "frames.jsonl") as lines_path, open(lines_path, "w") as lines, \
            tqdm(total=frames, unit="frame", desc="picosam demo", disable=None) as progress:
        try:
            while frames is None or written < frames:
                step = session.step()
                if step is None:
                    break
                result = step.result
                record = result.to_json()
                record["mask"] = None
                if result.mask is not None:
                    if frame_mask is None or frame_mask.shape != (result.frame_size[1], result.frame_size[0]):
                        frame_mask = np.zeros((result.frame_size[1], result.frame_size[0]), np.uint8)
                    name = f"masks/frame{result.frame:06d}_prompt{result.prompt.id}.png"
                    _write_png(out_dir / name, result.full_mask(out=frame_mask))
                    record["mask"] = name
                    masks += 1
                lines.write(json.dumps(record) + "\n")
                lines.flush()
                written += 1
                progress.update(1)
        except KeyboardInterrupt:
            echo("interrupted: keeping the frames written so far")
    write_json(out_dir / "run.json", {**run_info, "frames": written, "masks": masks,
                                      "prompts": [list(p.box) for p in session.prompts], "kpis": session.kpis()})
    echo(f"{out_dir}: {written} frames, {masks} masks (frames.jsonl, masks/, run.json)")
    return written


def _write_png(path: Path, image: np.ndarray) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise PicosamError(f"{path}: cannot write the PNG")


# -- interactive -----------------------------------------------------------------------------

def require_window() -> None:
    """A one-line error unless an OpenCV window can open here (checked before any slow work)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise PicosamError("no display to open the demo window on (DISPLAY is not set): use --headless --out DIR")
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error:
        from importlib import metadata

        try:  # the full wheel of the same build, e.g. 4.11.0.86
            wheel = metadata.version("opencv-python-headless")
        except metadata.PackageNotFoundError:
            wheel = f"{cv2.__version__}.*"
        raise PicosamError(
            f"the demo window needs OpenCV with GUI support, but this OpenCV {cv2.__version__} has none: "
            f"pip uninstall -y opencv-python-headless && pip install opencv-python=={wheel}, "
            f"or use --headless --out DIR (see docs/runtime.md)"
        ) from None


@dataclass
class _Drag:
    start: Optional[Tuple[int, int]] = None
    current: Optional[Tuple[int, int]] = None
    finished: Optional[Tuple[Tuple[float, float, float, float], bool]] = None  # box, add to the others


class _RateMeter:
    def __init__(self) -> None:
        self.rate, self._last = 0.0, None

    def tick(self) -> float:
        now = time.perf_counter()
        if self._last is not None:
            instant = 1.0 / max(now - self._last, 1e-6)
            self.rate = instant if self.rate == 0 else 0.9 * self.rate + 0.1 * instant
        self._last = now
        return self.rate


def run_interactive(session: Session, warning: Optional[str] = None, frames: Optional[int] = None) -> int:
    """The demo window; returns the frames shown."""
    require_window()
    drag = _Drag()

    def on_mouse(event, x, y, flags, _param):
        if event == cv2.EVENT_LBUTTONDOWN:
            drag.start = drag.current = (x, y)
        elif event == cv2.EVENT_MOUSEMOVE and drag.start is not None:
            drag.current = (x, y)
        elif event == cv2.EVENT_LBUTTONUP and drag.start is not None:
            (x0, y0), drag.start = drag.start, None
            box = (float(min(x0, x)), float(min(y0, y)), float(abs(x - x0)), float(abs(y - y0)))
            if box[2] >= MIN_DRAG_PIXELS and box[3] >= MIN_DRAG_PIXELS:
                drag.finished = (box, bool(flags & cv2.EVENT_FLAG_SHIFTKEY))

    cv2.setMouseCallback(WINDOW, on_mouse)
    meter, notice, shown = _RateMeter(), "", 0
    try:
        while frames is None or shown < frames:
            if drag.finished is not None:
                (box, add), drag.finished = drag.finished, None
                try:
                    session.add_box(box) if add else session.set_boxes([box])
                    notice = ""
                except PicosamError as err:
                    notice = str(err)
            step = session.step()
            if step is None:
                break
            image = step.image
            tracks = session.track_states()
            for result in session.latest_results():
                style = OverlayStyle(colour=PROMPT_COLOURS[result.prompt.id % len(PROMPT_COLOURS)])
                draw_mask(image, result.mask, result.roi_frame, style)
                draw_roi(image, result.roi_frame, style)
                track, why = tracks.get(result.prompt.id, ("ok", None))
                if track == "lost":
                    draw_lost(image, result.roi_frame, why)
            if drag.start is not None:
                cv2.rectangle(image, drag.start, drag.current, (255, 255, 255), 1)
            dnn = step.result.dnn_runtime_ms
            lines = [
                f"{session.backend.name}  {meter.tick():5.1f} FPS  DNN {'-' if dnn is None else f'{dnn:.1f}'} ms  "
                f"host {step.result.host_latency_ms:.1f} ms  prompts {len(session.prompts)}",
                "drag: prompt   shift+drag: add a prompt   r: whole frame   q: quit",
            ]
            _put_lines(image, lines, notice or None, warning)
            cv2.imshow(WINDOW, image)
            shown += 1
            key = cv2.waitKey(1) & 0xFF
            if key in QUIT_KEYS:
                break
            if key == RESET_KEY:
                session.reset()
            if cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                break  # the window was closed
    finally:
        cv2.destroyWindow(WINDOW)
    return shown


def draw_lost(image: np.ndarray, roi_frame, why: Optional[str]) -> None:
    """Mark a prompt whose track is lost: red ROI and "LOST (why)" above it."""
    cv2.rectangle(image, (roi_frame.x0, roi_frame.y0), (roi_frame.x1 - 1, roi_frame.y1 - 1), (0, 0, 255), 2)
    origin = (roi_frame.x0 + 4, max(roi_frame.y0 - 6, 14))
    text = f"LOST ({why})" if why else "LOST"
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1, cv2.LINE_AA)


def _put_lines(image: np.ndarray, lines, notice: Optional[str], warning: Optional[str]) -> None:
    scale = max(0.45, image.shape[1] / 1800)
    step = int(28 * scale / 0.6)
    entries = [(line, (255, 255, 255)) for line in lines]
    if notice:
        entries.append((notice, (0, 200, 255)))
    if warning:
        entries.append((warning, (0, 0, 255)))
    for row, (text, colour) in enumerate(entries, start=1):
        origin = (8, row * step)
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
