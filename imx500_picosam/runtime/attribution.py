"""Which ROI did the sensor really infer this frame on? Frame-exact attribution.

The IMX500 takes its ROI over I2C with no frame tag: an ROI set while streaming reaches the
network some frames later, and picamera2's ``get_roi_scaled`` returns the *last ROI set*,
not the one a frame was inferred with. Waiting a guessed number of frames after each change
(``settle_frames``) is a bet on the lag.

With input-tensor persistency (the converter's default) every completed request also
carries ``CnnInputTensor``, the 96x96 picture the network saw (picamera2's
``input_tensor_image`` unpacks it). :class:`RoiAttributor` keeps a short history of the
ROIs set and, for each frame, compares that picture with the frame's own crop at each ROI
still possibly in flight; the output belongs to the best match. The sensor takes ROIs in
the order they were sent, so once a frame is attributed to an ROI, older ones are no longer
candidates. A frame whose tensor matches no candidate well enough is dropped ("unmatched").
Candidates that score almost equally (within ``min_margin``) are one answer when their ROIs
lie within ``AttributionSettings.same_answer_limit`` frame pixels of each other on every edge
(3 px, or 3 cells of the 96x96 output as drawn in the frame, whichever is more) -- whichever
was used, the mask lands within that distance -- and the best one is shown ("grouped", counted):
a prompt that moves a few pixels per frame makes exactly such near-identical ROIs. Only
near-equal candidates further apart than that are dropped ("ambiguous"): a dropped frame
costs a mask, a wrong match would draw a mask into a box it was not computed for.

The ROI-switch latency is measured only where it is exact: on a frame attributed to a newer
ROI than the frame just before it, which was itself attributed (after a dropped frame the
switch may have happened unseen, so the gap would overstate the lag).

The comparison is the normalised cross-correlation of small grey images (the mean of the
three channels): it ignores channel order (picamera2 returns an RGB network's tensor as
B, G, R) and any gain or offset between the sensor's on-chip ISP and the Pi's ISP that
makes the main stream.

Without an input tensor the attributor takes the backend's word: exact in the emulator
without simulated latency, ``settle_frames`` on a camera whose RPK was converted without
input persistency (``IMX500Backend`` says so once).
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Optional, Sequence

import cv2
import numpy as np

from ..geometry import MODEL_INPUT_SIZE, Roi

MATCH_SIZE = 48  # side of the grey images compared: a 5 px move of a 200 px ROI still shows (about 1 ms for 4 candidates)


@dataclass(frozen=True)
class AttributionSettings:
    """``min_score``: the lowest correlation accepted as "this ROI"; ``min_margin``: how
    much better than the runner-up (another ROI) the best match must be; ``max_latency``:
    frames after being replaced during which an old ROI may still be what the sensor uses;
    near-equal candidates whose ROIs (on the main stream) differ by at most
    :meth:`same_answer_limit` pixels on every edge are one answer, shown at the best match:
    ``same_answer_px``, or ``same_answer_cells`` cells of the 96x96 output as they land in the
    frame when more (a mask drawn into a neighbour's ROI moves by that edge distance at most,
    and one output cell of a 200 px ROI is already 2 px wide)."""

    min_score: float = 0.6
    min_margin: float = 0.03
    max_latency: int = 8
    same_answer_px: float = 3
    same_answer_cells: float = 3.0

    def same_answer_limit(self, roi_frame: Roi) -> float:
        """The edge distance (frame pixels) within which two candidate ROIs are one answer."""
        cell = max(roi_frame.width, roi_frame.height) / MODEL_INPUT_SIZE
        return max(self.same_answer_px, self.same_answer_cells * cell)


@dataclass
class RoiEntry:
    """One ROI sent to the backend: when, for which owner (a prompt's state), and when replaced."""

    roi: Roi
    owner: object
    set_frame: int  # the index of the first capture requested after the ROI was set
    replaced_frame: Optional[int] = None
    seen: bool = False  # a frame has been attributed to it
    order: int = 0  # position in the order ROIs were sent (the sensor takes them in this order)


@dataclass(frozen=True)
class Attribution:
    """The outcome for one frame: ``entry`` is None when the frame is dropped (``reason``)."""

    entry: Optional[RoiEntry]
    reason: str  # "matched", "grouped", "reported", "no-output", "unmatched", "ambiguous", "settling"
    score: Optional[float] = None
    group: int = 1  # candidates taken as one answer ("grouped": more than one)


def grey_signature(image: np.ndarray) -> Optional[np.ndarray]:
    """A zero-mean, unit-norm MATCH_SIZE^2 vector of the image's channel mean, or None for a flat image."""
    # Shrink first (uint8, area average), then take the channel mean: the cost is the resize.
    small = cv2.resize(np.ascontiguousarray(image), (MATCH_SIZE, MATCH_SIZE), interpolation=cv2.INTER_AREA)
    small = small.astype(np.float32)
    small = (small.mean(axis=2) if small.ndim == 3 else small).ravel()
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    if norm < 1e-3 * MATCH_SIZE:
        return None  # a flat picture matches everything equally: no evidence
    return small / norm


def crop_signature(frame_bgr: np.ndarray, roi_frame: Roi) -> Optional[np.ndarray]:
    patch = frame_bgr[max(roi_frame.y0, 0) : roi_frame.y1, max(roi_frame.x0, 0) : roi_frame.x1]
    if patch.shape[0] < 2 or patch.shape[1] < 2:
        return None
    return grey_signature(patch)


@dataclass
class RoiAttributor:
    """The ROI history and the frame-by-frame attribution, with its counts and latencies."""

    settings: AttributionSettings = field(default_factory=AttributionSettings)
    history: Deque[RoiEntry] = field(default_factory=lambda: deque(maxlen=16))
    latencies: List[int] = field(default_factory=list)
    counts: Dict[str, int] = field(default_factory=lambda: {
        "matched": 0, "grouped": 0, "reported": 0, "no-output": 0, "unmatched": 0, "ambiguous": 0,
        "settling": 0})
    mode: Optional[str] = None  # "input-tensor" or the backend's rule, known after the first output
    _last: Optional[RoiEntry] = None  # the entry the latest attributed frame was inferred on
    _last_frame: Optional[int] = None  # that frame
    _sent: int = 0

    def roi_set(self, roi: Roi, owner: object, next_frame: int) -> None:
        """Record that ``roi`` was sent to the backend before capture ``next_frame``."""
        current = self.history[-1] if self.history else None
        if current is not None and current.roi == roi:
            current.owner = owner  # the same ROI for another prompt state (e.g. after follow)
            return
        if current is not None:
            current.replaced_frame = next_frame
        self._sent += 1
        self.history.append(RoiEntry(roi, owner, next_frame, order=self._sent))

    def candidates(self, frame: int) -> List[RoiEntry]:
        """ROIs the sensor may be using at ``frame``: the newest entry per distinct ROI among
        those set by then, not replaced more than ``max_latency`` frames before, and not older
        than the ROI of the latest attributed frame (the sensor never goes back)."""
        oldest = self._last.order if self._last is not None else 0
        newest: Dict[Roi, RoiEntry] = {}
        for entry in self.history:
            if entry.set_frame > frame or entry.order < oldest:
                continue
            if entry.replaced_frame is not None and frame - entry.replaced_frame >= self.settings.max_latency:
                continue
            newest[entry.roi] = entry
        return list(newest.values())

    def attribute(self, frame: int, frame_bgr: np.ndarray, input_image: Optional[np.ndarray],
                  has_output: bool, settled_roi: Optional[Roi], to_frame: Callable[[Roi], Roi],
                  backend_rule: str = "settle-frames") -> Attribution:
        """Decide which ROI capture ``frame``'s output belongs to.

        ``input_image``: the input tensor as picamera2's ``input_tensor_image`` returns it
        (None without input persistency); ``settled_roi``: the backend's own answer (under
        ``backend_rule``; None while settling); ``to_frame`` maps a sensor ROI to the frame.
        """
        if not has_output:
            return self._count(Attribution(None, "no-output"))
        if input_image is None:
            # No picture of what the network saw: the backend's own word (exact in the
            # emulator without latency, the settle rule on a camera without input persistency).
            self.mode = backend_rule
            if settled_roi is None:
                return self._count(Attribution(None, "settling"))
            entry = next((e for e in reversed(self.history) if e.roi == settled_roi), None)
            if entry is not None:
                self._last, self._last_frame = entry, frame
            return self._count(Attribution(entry, "reported" if entry is not None else "unmatched"))
        self.mode = "input-tensor"
        tensor = grey_signature(input_image)
        scored = []
        for entry in self.candidates(frame):
            crop = crop_signature(frame_bgr, to_frame(entry.roi))
            if tensor is not None and crop is not None:
                scored.append((float(np.dot(tensor, crop)), entry))
        if not scored:
            return self._count(Attribution(None, "unmatched"))
        scored.sort(key=lambda pair: pair[0], reverse=True)
        best_score, best = scored[0]
        if best_score < self.settings.min_score:
            return self._count(Attribution(None, "unmatched", best_score))
        rivals = [entry for score, entry in scored[1:] if best_score - score < self.settings.min_margin]
        if rivals:
            best_frame = to_frame(best.roi)
            limit = self.settings.same_answer_limit(best_frame)
            if any(edge_distance(to_frame(entry.roi), best_frame) > limit for entry in rivals):
                return self._count(Attribution(None, "ambiguous", best_score, 1 + len(rivals)))
        self._observe(best, frame)
        reason = "grouped" if rivals else "matched"
        return self._count(Attribution(best, reason, best_score, 1 + len(rivals)))

    def _observe(self, entry: RoiEntry, frame: int) -> None:
        """The first frame inferred on a newly set ROI gives one ROI-switch latency, when the
        frame just before it was attributed to an older ROI (so the switch is seen exactly)."""
        previous, previous_frame = self._last, self._last_frame
        if (not entry.seen and previous is not None and previous.order < entry.order
                and previous_frame == frame - 1):
            self.latencies.append(frame - entry.set_frame)
        entry.seen = True
        self._last, self._last_frame = entry, frame

    def _count(self, attribution: Attribution) -> Attribution:
        self.counts[attribution.reason] += 1
        return attribution

    def kpis(self) -> Dict[str, object]:
        """What the KPI JSON reports: the mode, frame counts and the measured switch latency."""
        latency = latency_summary(self.latencies)
        return {"mode": self.mode, "frames": dict(self.counts), "roi_switch_latency_frames": latency}


def edge_distance(a: Roi, b: Roi) -> int:
    """How far apart two rectangles are: the largest move of any of their four edges (pixels)."""
    return max(abs(a.x0 - b.x0), abs(a.y0 - b.y0), abs(a.x1 - b.x1), abs(a.y1 - b.y1))


def roi_iou(a: Roi, b: Roi) -> float:
    """Intersection over union of two rectangles."""
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    inter = max(width, 0) * max(height, 0)
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def latency_summary(latencies: Sequence[int]) -> Dict[str, object]:
    if not latencies:
        return {"n": 0, "median": None, "max": None}
    return {"n": len(latencies), "median": float(statistics.median(latencies)), "max": int(max(latencies))}
