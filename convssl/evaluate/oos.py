"""Out-of-scope (OOS) detection: a rejection score per text, a threshold picked on validation only.

Scores are "in-scope-ness" (higher = more in scope):
* max_softmax: the probe's top class probability (Hendrycks & Gimpel 2017), the usual baseline;
* mahalanobis: minus the smallest Mahalanobis distance to a class mean under one shared
  (Ledoit-Wolf shrunk) covariance (Lee et al. 2018; Podolskiy et al. 2021 show it is much stronger
  on CLINC150 than max softmax);
* centroid_cosine: cosine similarity to the nearest class centroid.

The threshold is chosen on the validation split (in-scope val + OOS val), never on test:
`balanced` maximises (in-scope accuracy + OOS recall) / 2, `f1` maximises OOS F1. A text is
rejected as OOS when its score is below the threshold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convssl.evaluate.intent import centroid_scores


def max_softmax(proba: np.ndarray) -> np.ndarray:
    return proba.max(axis=1)


class Mahalanobis:
    """Class means and a shared shrunk precision matrix, fitted on in-scope training features."""

    def __init__(self, X: np.ndarray, y: np.ndarray, n_classes: int) -> None:
        from sklearn.covariance import LedoitWolf

        X = np.asarray(X, dtype=np.float64)
        self.means = np.stack([X[y == c].mean(axis=0) if np.any(y == c) else np.full(X.shape[1], np.inf)
                               for c in range(n_classes)])
        centred = X - self.means[y]
        self.precision = LedoitWolf().fit(centred).precision_

    def score(self, X: np.ndarray, chunk: int = 2048) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        out = np.empty(X.shape[0])
        finite = np.isfinite(self.means).all(axis=1)
        means = self.means[finite]
        # d(x, mu)^2 = x'Px - 2 x'P mu + mu'P mu, computed for all classes at once.
        pm = means @ self.precision
        mpm = np.einsum("cd,cd->c", pm, means)
        for start in range(0, X.shape[0], chunk):
            x = X[start : start + chunk]
            xpx = np.einsum("nd,de,ne->n", x, self.precision, x)
            d2 = xpx[:, None] - 2.0 * x @ pm.T + mpm[None, :]
            out[start : start + chunk] = -d2.min(axis=1)
        return out


def choose_threshold(scores: np.ndarray, is_oos: np.ndarray, correct: np.ndarray, rule: str = "balanced") -> float:
    """Threshold on validation scores: every midpoint between sorted scores is a candidate.

    `correct` marks in-scope texts the classifier gets right (accepted and correct = in-scope hit).
    """
    order = np.sort(np.unique(scores))
    candidates = np.concatenate([[order[0] - 1e-9], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-9]])
    if len(candidates) > 2000:
        candidates = np.quantile(scores, np.linspace(0, 1, 2001))
    best_t, best_v = float(candidates[0]), -1.0
    n_in, n_oos = max(int((~is_oos).sum()), 1), max(int(is_oos.sum()), 1)
    for t in candidates:
        rejected = scores < t
        in_acc = float(np.sum(~rejected & ~is_oos & correct)) / n_in
        tp = float(np.sum(rejected & is_oos))
        recall = tp / n_oos
        if rule == "f1":
            precision = tp / max(int(rejected.sum()), 1)
            value = 2 * precision * recall / max(precision + recall, 1e-12)
        else:
            value = (in_acc + recall) / 2
        if value > best_v:
            best_t, best_v = float(t), value
    return best_t


def oos_metrics(scores: np.ndarray, is_oos: np.ndarray, correct: np.ndarray, threshold: float) -> dict[str, Any]:
    """Test metrics at a fixed threshold, plus the threshold-free AUROC (OOS = positive class)."""
    from sklearn.metrics import roc_auc_score

    rejected = scores < threshold
    n_in, n_oos = max(int((~is_oos).sum()), 1), max(int(is_oos.sum()), 1)
    tp = float(np.sum(rejected & is_oos))
    recall = tp / n_oos
    precision = tp / max(int(rejected.sum()), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    in_scope_accuracy = float(np.sum(~rejected & ~is_oos & correct)) / n_in
    overall = (float(np.sum(~rejected & ~is_oos & correct)) + tp) / max(len(scores), 1)
    auroc = float(roc_auc_score(is_oos.astype(int), -scores)) if 0 < is_oos.sum() < len(is_oos) else float("nan")
    return {
        "in_scope_accuracy": in_scope_accuracy,
        "oos_recall": recall,
        "oos_precision": precision,
        "oos_f1": f1,
        "auroc": auroc,
        "overall_accuracy": overall,
        "threshold": threshold,
    }


def compute_scores(
    name: str, proba: np.ndarray, X: Any, X_train: Any, y_train: np.ndarray, n_classes: int,
    maha: Mahalanobis | None,
) -> np.ndarray:
    if name == "max_softmax":
        return max_softmax(proba)
    if name == "centroid_cosine":
        return centroid_scores(X_train, y_train, X, n_classes).max(axis=1)
    if name == "mahalanobis":
        assert maha is not None
        return maha.score(X)
    raise ValueError(f"unknown OOS score {name!r}")
