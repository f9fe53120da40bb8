"""The one mask IoU, used by evaluation, the build's float-vs-quantized agreement and the
teacher's automatic proposals.

Two empty masks count as IoU 1.0: both say "no object here" and agree perfectly. The
authors' evaluation counts them so, ``make rpk``'s agreement figure needs it (a crop where
neither model fires is agreement, not a failure), and for proposals (mask stability, overlap
between kept masks) no empty mask ever reaches the comparison: proposals below the minimum
area are dropped first. Ground floor: imports no stage.
"""

from __future__ import annotations

import numpy as np


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks of the same shape; 1.0 when both are empty."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
