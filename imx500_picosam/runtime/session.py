"""One session interface over two backends: prompts in, masks in the frame out.

A :class:`Session` owns the prompts (boxes in main-stream pixels, each with an id), turns
the current prompt into a sensor ROI with the shared ROI rule, asks its backend for the
next frame, and decodes the backend's 96x96 logits into a mask in frame coordinates.
Several prompts are served in turn, one per result, each result tagged with its prompt id
and frame number; with ``follow`` a prompt's box moves to its last mask's bounding box.
``set_boxes`` with a box whose ROI overlaps the prompt's current one (IoU >= 0.5) nudges that
prompt rather than starting a new one, so an application that sets its boxes every frame
keeps receiving the masks still in flight for them.

Every prompt has a track state, ``"ok"`` or ``"lost"``: lost when its mask vanished (fewer
than ``MIN_TRACK_PIXELS``) or its area jumped by more than ``TRACK_AREA_RATIO`` against the
track's running area (the mask left the object: it shrank to a fragment or spread over the
background). A lost prompt does not follow (its box stays where the object was last seen)
and becomes "ok" again when a mask matches the running area again; every result, the
headless JSON lines, ``run.json`` (``kpis.tracks``) and the demo window say so.

Backends (:class:`~imx500_picosam.runtime.imx500.IMX500Backend` on the camera,
:class:`~imx500_picosam.runtime.emulator.EmulatorBackend` on a CPU) only deliver frames
(:class:`Capture`); everything else happens here, identically. Which ROI a frame's output
was computed on is decided per frame by :class:`~.attribution.RoiAttributor` (the picture
the network saw, matched against the frame's crops at the ROIs recently set), so every
result carries the ROI really used and the mask is drawn where it belongs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from ..errors import PicosamError, UserError
from .attribution import AttributionSettings, RoiAttributor, roi_iou
from ..geometry import LEGACY_ROI_RULE, Roi
from .coords import StreamGeometry, full_view_box, sensor_rect_to_main, sensor_roi_for_box
from .decode import MaskDecoder, mask_area, mask_bounding_box, paste_into

Box = Tuple[float, float, float, float]

MIN_TRACK_PIXELS = 16  # a mask smaller than this has vanished
TRACK_AREA_RATIO = 3.0  # a mask this many times larger or smaller than the running area left the object
TRACK_AREA_SMOOTHING = 0.2  # weight of a new area in the running area
NUDGE_IOU = 0.5  # set_boxes keeps a prompt whose new ROI overlaps its current one at least this much


@dataclass(frozen=True)
class Prompt:
    id: int
    box: Box  # COCO x, y, w, h in main-stream pixels


@dataclass(frozen=True)
class Capture:
    """One frame from a backend and, when available, the network's answer for an ROI."""

    index: int  # frame number, counted by the backend from 0
    image: np.ndarray  # main stream, BGR uint8, owned by the receiver (may be drawn on)
    geometry: StreamGeometry  # where this frame's pixels come from on the sensor
    roi: Optional[Roi]  # the sensor ROI the logits were computed on, when the backend knows it
    logits: Optional[np.ndarray]  # (96, 96) float32, row = y; None when the frame has none
    dnn_runtime_ms: Optional[float]  # the network's own runtime (sensor KPI or CPU inference)
    dsp_runtime_ms: Optional[float]  # the sensor's DSP runtime (IMX500 only)
    host_ms: float  # host time the backend spent on this frame after it arrived
    # The input tensor as picamera2's ``input_tensor_image`` returns it (96x96x3 uint8), when
    # the backend has one; with it, ``roi`` is None and the session finds the ROI itself.
    input_image: Optional[np.ndarray] = None


class Backend(Protocol):
    name: str
    is_still: bool  # True when every frame is the same picture (an image file)
    roi_knowledge: str  # how a Capture's ``roi`` is known without an input image ("exact", "settle-frames")
    # The model's ROI rule (geometry.ROI_RULES): how a prompt box becomes the sensor ROI. A backend
    # that names none runs the authors' ``square`` rule.
    roi_rule: str

    def start(self) -> StreamGeometry: ...

    def set_roi(self, roi: Roi) -> None: ...

    def capture(self) -> Optional[Capture]: ...  # None when the source has ended

    def close(self) -> None: ...


@dataclass(frozen=True)
class SegmentationResult:
    """What one frame produced for one prompt. ``mask`` is None while the backend has no
    answer for this prompt's ROI yet (the sensor needs a few frames after an ROI change)."""

    frame: int
    prompt: Prompt
    roi_sensor: Roi
    roi_frame: Roi  # the ROI on the main stream (picamera2 ``get_roi_scaled`` semantics)
    mask: Optional[np.ndarray]  # uint8 0/1 of roi_frame's size
    mask_area: Optional[int]  # pixels of the frame in the mask
    host_latency_ms: float  # host work for this frame: backend + decode
    dnn_runtime_ms: Optional[float]
    dsp_runtime_ms: Optional[float] = None
    frame_size: Tuple[int, int] = (0, 0)  # (width, height) of the main stream
    attribution: str = "reported"  # how roi_sensor was established, or why there is no mask
    track: str = "ok"  # the prompt's track state after this frame: "ok" or "lost"

    def full_mask(self, out: Optional[np.ndarray] = None, value: int = 255) -> np.ndarray:
        """The mask as a frame-sized uint8 image (0 / ``value``); ``out`` is reused if given."""
        if out is None:
            out = np.zeros((self.frame_size[1], self.frame_size[0]), dtype=np.uint8)
        if self.mask is None:
            out.fill(0)
            return out
        return paste_into(out, self.mask, self.roi_frame, value)

    def to_json(self) -> Dict[str, object]:
        return {
            "frame": self.frame,
            "prompt_id": self.prompt.id,
            "prompt": [round(v, 2) for v in self.prompt.box],
            "roi_sensor": list(self.roi_sensor.as_xywh()),
            "roi_frame": list(self.roi_frame.as_xywh()),
            "mask_area": self.mask_area,
            "host_latency_ms": round(self.host_latency_ms, 3),
            "dnn_runtime_ms": None if self.dnn_runtime_ms is None else round(self.dnn_runtime_ms, 3),
            "dsp_runtime_ms": None if self.dsp_runtime_ms is None else round(self.dsp_runtime_ms, 3),
            "attribution": self.attribution,
            "track": self.track,
        }


@dataclass(frozen=True)
class Step:
    image: np.ndarray  # the frame (BGR), free to draw on
    result: SegmentationResult


@dataclass(eq=False)  # compared by identity: a state is one prompt's life, even if its box repeats
class _PromptState:
    prompt: Prompt
    latest: Optional[SegmentationResult] = None
    track: str = "ok"
    lost_why: Optional[str] = None  # "vanished" or "area" while lost
    area: Optional[float] = None  # running mask area of the track
    lost_frames: int = 0  # frames whose result said "lost"
    losses: int = 0  # times the track went from ok to lost

    def observe(self, area: int) -> None:
        """Update the track state with a new mask's area."""
        if area < MIN_TRACK_PIXELS:
            lost_why = "vanished"
        elif self.area is not None and not 1 / TRACK_AREA_RATIO <= area / self.area <= TRACK_AREA_RATIO:
            lost_why = "area"
        else:
            lost_why = None
            self.area = float(area) if self.area is None else (
                (1 - TRACK_AREA_SMOOTHING) * self.area + TRACK_AREA_SMOOTHING * area)
        if lost_why is not None and self.track == "ok":
            self.losses += 1
        self.track, self.lost_why = ("lost", lost_why) if lost_why else ("ok", None)


class Session:
    """Prompts -> ROIs -> backend -> masks. Use as a context manager (starts and closes the backend)."""

    def __init__(self, backend: Backend, boxes: Sequence[Box] = (), follow: bool = False,
                 attribution: AttributionSettings = AttributionSettings()):
        self.backend = backend
        self.attributor = RoiAttributor(attribution)
        self._next_frame = 0  # the index the backend's next capture will have
        self.follow = follow
        self._initial_boxes = list(boxes)
        self._geometry: Optional[StreamGeometry] = None
        self._prompts: List[_PromptState] = []
        self._turn = 0
        self._next_id = 0
        self._decoder = MaskDecoder()

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> "Session":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        self._geometry = self.backend.start()
        try:
            if self._initial_boxes:
                self.set_boxes(self._initial_boxes)
            else:
                self.reset()
        except UserError:
            self.backend.close()
            raise

    def close(self) -> None:
        self.backend.close()

    @property
    def geometry(self) -> StreamGeometry:
        if self._geometry is None:
            raise PicosamError("the session has not been started")
        return self._geometry

    # -- prompts ---------------------------------------------------------------------
    @property
    def prompts(self) -> List[Prompt]:
        return [state.prompt for state in self._prompts]

    def latest_results(self) -> List[SegmentationResult]:
        """The newest result with a mask for every prompt that has one."""
        return [state.latest for state in self._prompts if state.latest is not None]

    def set_boxes(self, boxes: Sequence[Box]) -> List[Prompt]:
        """Replace all prompts; every box is checked first (nothing changes on an error).

        The i-th box nudges the i-th prompt (same id, same track, masks in flight still
        delivered) when its ROI overlaps that prompt's current ROI by IoU >= ``NUDGE_IOU``;
        otherwise it starts a new prompt."""
        if not boxes:
            raise PicosamError("at least one prompt box is needed")
        rois = [self._roi_for(box) for box in boxes]
        states: List[_PromptState] = []
        for index, (box, roi) in enumerate(zip(boxes, rois)):
            old = self._prompts[index] if index < len(self._prompts) else None
            if old is not None and roi_iou(self._roi_for(old.prompt.box), roi) >= NUDGE_IOU:
                old.prompt = Prompt(old.prompt.id, tuple(float(v) for v in box))  # type: ignore[arg-type]
                states.append(old)
            else:
                states.append(_PromptState(Prompt(index, tuple(float(v) for v in box))))  # type: ignore[arg-type]
        kept = all(state in self._prompts for state in states)
        self._turn = self._turn % len(states) if kept else 0
        self._prompts, self._next_id = states, len(states)
        return [state.prompt for state in states]

    def add_box(self, box: Box) -> Prompt:
        self._roi_for(box)
        prompt = Prompt(self._next_id, tuple(float(v) for v in box))  # type: ignore[arg-type]
        self._next_id += 1
        self._prompts.append(_PromptState(prompt))
        return prompt

    def reset(self) -> List[Prompt]:
        """One prompt covering the whole frame (the demo's ``r``)."""
        return self.set_boxes([full_view_box(self.geometry)])

    def _roi_for(self, box: Box) -> Roi:
        geometry = self.geometry
        return sensor_roi_for_box(box, geometry, geometry.min_roi_side(), self.roi_rule)

    @property
    def roi_rule(self) -> str:
        """The ROI rule prompts become sensor ROIs by: the backend's model's."""
        return getattr(self.backend, "roi_rule", LEGACY_ROI_RULE)

    # -- frames ----------------------------------------------------------------------
    def step(self) -> Optional[Step]:
        """Ask for the ROI of the prompt whose turn it is and segment the next frame; the
        result belongs to the prompt whose ROI the frame was really inferred on (None: the
        source ended). The turn passes on once the asked-for prompt has had a result."""
        state = self._prompts[self._turn]
        roi = self._roi_for(state.prompt.box)
        self.backend.set_roi(roi)
        self.attributor.roi_set(roi, state, self._next_frame)
        capture = self.backend.capture()
        if capture is None:
            return None
        started = time.perf_counter()
        self._next_frame = capture.index + 1
        self._geometry = capture.geometry
        attribution = self.attributor.attribute(
            capture.index, capture.image, capture.input_image, capture.logits is not None, capture.roi,
            lambda sensor_roi: sensor_rect_to_main(sensor_roi, capture.geometry),
            getattr(self.backend, "roi_knowledge", "exact"),
        )
        owner = attribution.entry.owner if attribution.entry is not None else None
        if owner is None or owner not in self._prompts:  # dropped, or the prompt was replaced meanwhile
            reason = attribution.reason if owner is None else "stale"
            if state.track == "lost":
                state.lost_frames += 1
            return Step(capture.image, self._result(capture, state, roi, None, reason, started))
        used = attribution.entry.roi
        roi_frame = sensor_rect_to_main(used, capture.geometry)
        mask = self._decoder.decode(capture.logits, roi_frame)
        owner.observe(mask_area(mask))
        if owner.track == "lost":
            owner.lost_frames += 1
        result = self._result(capture, owner, used, mask, attribution.reason, started, roi_frame)
        owner.latest = result
        if self.follow and owner.track == "ok":
            self._follow(owner, mask, roi_frame)
        if owner is state:
            self._turn = (self._turn + 1) % len(self._prompts)
        return Step(capture.image, result)

    def _result(self, capture: Capture, state: _PromptState, roi: Roi, mask: Optional[np.ndarray], reason: str,
                started: float, roi_frame: Optional[Roi] = None) -> SegmentationResult:
        return SegmentationResult(
            frame=capture.index, prompt=state.prompt, roi_sensor=roi,
            roi_frame=roi_frame or sensor_rect_to_main(roi, capture.geometry), mask=mask,
            mask_area=None if mask is None else mask_area(mask), host_latency_ms=capture.host_ms + _ms_since(started),
            dnn_runtime_ms=capture.dnn_runtime_ms, dsp_runtime_ms=capture.dsp_runtime_ms,
            frame_size=capture.geometry.main_size, attribution=reason, track=state.track,
        )

    def kpis(self) -> Dict[str, object]:
        """The run's measured facts for the KPI JSON: attribution counts, ROI-switch latency and
        whatever the backend measures (the camera's watchdog restarts)."""
        backend_kpis = getattr(self.backend, "kpis", None)
        tracks = [{"prompt_id": state.prompt.id, "state": state.track, "why": state.lost_why,
                   "lost_frames": state.lost_frames, "losses": state.losses} for state in self._prompts]
        return {"attribution": self.attributor.kpis(), "tracks": tracks,
                **(backend_kpis() if backend_kpis is not None else {})}

    def track_states(self) -> Dict[int, Tuple[str, Optional[str]]]:
        """Each prompt's track state and, while lost, why: {prompt id: (state, why)}."""
        return {state.prompt.id: (state.track, state.lost_why) for state in self._prompts}

    def _follow(self, state: _PromptState, mask: np.ndarray, roi_frame: Roi) -> None:
        """Move the prompt to its mask's bounding box; an empty mask keeps the old box."""
        box = mask_bounding_box(mask, roi_frame)
        if box is not None:
            state.prompt = Prompt(state.prompt.id, tuple(float(v) for v in box))  # type: ignore[arg-type]


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
