"""Notice a stalled IMX500 stream and decide when to restart the camera.

Users of the AI Camera run their own watchdog services because the stream can stop: on a
Pi 5 libcamera logs "Dequeue timer ... has expired" and no request arrives any more
(rpicam-apps#927); on a Pi 4 the sensor can loop on firmware reloads, delivering frames
without output tensors (libcamera#355). :class:`Watchdog` holds the rules; the backend
(:class:`~.imx500.IMX500Backend`) asks it after every frame or failed wait, restarts the
camera (close, ``IMX500(rpk)`` again, which reloads the network, start, re-send the ROI)
when it says so, and reports the restarts in the KPIs. A camera that keeps stalling is a
one-line error after ``max_restarts`` restarts in a row without a good frame between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..errors import PicosamError


@dataclass(frozen=True)
class WatchdogSettings:
    """``stall_frames``: frame times to wait for a request before calling the stream stalled;
    ``startup_s``: the longest wait for the first frame after a start (the firmware upload);
    ``no_output_frames``: consecutive frames without an output tensor, once the network has
    produced one, that mean the firmware was lost (a reload loop); ``load_frames``: the same
    before the first output after a start; ``max_restarts``: restarts in a row without a
    frame with an output between them before giving up."""

    stall_frames: int = 30
    startup_s: float = 120.0
    no_output_frames: int = 150
    load_frames: int = 900
    max_restarts: int = 5


@dataclass(frozen=True)
class Restart:
    frame: int  # the index the next capture had when the stall was noticed
    reason: str


@dataclass
class Watchdog:
    settings: WatchdogSettings = field(default_factory=WatchdogSettings)
    restarts: List[Restart] = field(default_factory=list)
    _frames_without_output: int = 0
    _had_output: bool = False  # since the last (re)start
    _in_a_row: int = 0
    _first_frame_pending: bool = True

    def wait_s(self, frame_rate: float) -> float:
        """How long to wait for the next request (seconds)."""
        if self._first_frame_pending:
            return self.settings.startup_s
        return self.settings.stall_frames / frame_rate

    def frame(self, has_output: bool) -> Optional[str]:
        """Account for one delivered frame; a reason to restart, or None."""
        self._first_frame_pending = False
        if has_output:
            self._frames_without_output, self._had_output, self._in_a_row = 0, True, 0
            return None
        self._frames_without_output += 1
        limit = self.settings.no_output_frames if self._had_output else self.settings.load_frames
        if self._frames_without_output >= limit:
            state = "after the network had run" if self._had_output else "since the start"
            return f"{self._frames_without_output} frames without an output tensor {state} (firmware reload loop?)"
        return None

    def restarting(self, frame: int, reason: str) -> None:
        """Record a restart, or give up with a one-line error when restarts do not help."""
        self._in_a_row += 1
        if self._in_a_row > self.settings.max_restarts:
            raise PicosamError(
                f"the camera stalled {self._in_a_row} times in a row ({reason}); last restarts did not help: "
                "check the cable and power, then run `picosam doctor`"
            )
        self.restarts.append(Restart(frame, reason))
        self._frames_without_output, self._had_output, self._first_frame_pending = 0, False, True

    def kpis(self) -> Dict[str, object]:
        return {"restarts": len(self.restarts),
                "restart_log": [{"frame": r.frame, "reason": r.reason} for r in self.restarts]}
