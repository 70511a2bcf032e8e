"""Choose the out-of-scope threshold from validation data only.

The threshold is a property of the deployed model, so it must never see test data. Scores are
"higher = more in scope"; a text is rejected when its score is below the threshold.

* With out-of-scope validation examples (CLINC150's ``oos_val``, or labelled ``oos`` lines in a
  feedback export) the threshold maximises ``criterion``:
  - ``balanced`` (default): the mean of in-scope accuracy (right intent *and* accepted) and
    out-of-scope recall, so the 100 OOS validation texts weigh as much as the 3,000 in-scope ones;
  - ``joint_accuracy``: accuracy over all validation texts with ``oos`` as one more class
    (Larson et al. 2019's "overall accuracy"), which favours in-scope accuracy;
  - ``oos_recall``: the best in-scope accuracy among thresholds that reject at least
    ``oos_recall_target`` of the out-of-scope texts, for a team whose requirement is stated as
    "catch 90% of what we cannot answer".
* Without them, the threshold is the ``1 - keep_fraction`` quantile of the in-scope validation
  scores, so that ``keep_fraction`` (default 95%) of in-scope traffic is accepted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

Criterion = Literal["balanced", "joint_accuracy", "oos_recall"]


@dataclass
class Calibration:
    threshold: float
    method: str
    in_scope_accuracy: float
    in_scope_accept_rate: float
    oos_recall: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def _rates(threshold: float, in_scores: np.ndarray, in_correct: np.ndarray,
           oos_scores: np.ndarray | None) -> tuple[float, float, float | None]:
    accepted = in_scores >= threshold
    acc = float((accepted & in_correct).mean()) if len(in_scores) else 0.0
    recall = float((oos_scores < threshold).mean()) if oos_scores is not None and len(oos_scores) else None
    return acc, float(accepted.mean()) if len(in_scores) else 0.0, recall


def calibrate_threshold(
    in_scores: np.ndarray,
    in_correct: np.ndarray,
    oos_scores: np.ndarray | None = None,
    criterion: Criterion = "balanced",
    keep_fraction: float = 0.95,
    oos_recall_target: float = 0.9,
) -> Calibration:
    """Pick the threshold on validation scores; see the module docstring for the rule."""
    in_scores = np.asarray(in_scores, dtype=np.float64)
    in_correct = np.asarray(in_correct, dtype=bool)
    if len(in_scores) == 0:
        raise ValueError("calibration needs at least one in-scope validation example")
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    if oos_scores is None or len(oos_scores) == 0:
        threshold = float(np.quantile(in_scores, 1.0 - keep_fraction, method="lower"))
        acc, accept, _ = _rates(threshold, in_scores, in_correct, None)
        return Calibration(threshold, f"keep_{keep_fraction:g}_of_in_scope", acc, accept, None)
    oos_scores = np.asarray(oos_scores, dtype=np.float64)
    threshold = _best_threshold(in_scores, in_correct, oos_scores, criterion, oos_recall_target)
    acc, accept, recall = _rates(threshold, in_scores, in_correct, oos_scores)
    return Calibration(threshold, criterion, acc, accept, recall)


def _best_threshold(in_scores: np.ndarray, in_correct: np.ndarray, oos_scores: np.ndarray,
                    criterion: str, oos_recall_target: float = 0.9) -> float:
    """Scan every distinct score as a candidate threshold, vectorised with sorted counts."""
    candidates = np.unique(np.concatenate([in_scores, oos_scores]))
    # Accepting means score >= t: count of in-scope correct with score >= t, oos with score < t.
    correct_sorted = np.sort(in_scores[in_correct])
    oos_sorted = np.sort(oos_scores)
    kept_correct = len(correct_sorted) - np.searchsorted(correct_sorted, candidates, side="left")
    rejected_oos = np.searchsorted(oos_sorted, candidates, side="left")
    in_acc = kept_correct / len(in_scores)
    oos_recall = rejected_oos / len(oos_scores)
    if criterion == "balanced":
        objective = 0.5 * (in_acc + oos_recall)
    elif criterion == "joint_accuracy":
        objective = (kept_correct + rejected_oos) / (len(in_scores) + len(oos_scores))
    elif criterion == "oos_recall":
        # thresholds short of the recall are out; one above every score rejects all, so one qualifies
        candidates = np.append(candidates, candidates[-1] + 1.0)
        in_acc = np.append(in_acc, 0.0)
        oos_recall = np.append(oos_recall, 1.0)
        objective = np.where(oos_recall >= oos_recall_target - 1e-12, in_acc, -1.0)
    else:
        raise ValueError(f"unknown calibration criterion {criterion!r}; known: balanced, joint_accuracy, oos_recall")
    best = int(np.argmax(objective))  # ties: the lowest threshold, which rejects the least
    if best == 0:
        return float(candidates[0])
    # Midpoint between neighbours generalises better than sitting exactly on one example's score.
    return float(0.5 * (candidates[best - 1] + candidates[best]))
