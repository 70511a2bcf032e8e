"""Intent classification on frozen features: linear probe, kNN, nearest centroid, k-shot probes.

All functions take feature matrices (dense numpy or sparse TF-IDF rows, L2-normalised) and integer
labels, so the same code scores every model and every baseline. Test labels never seen in train
are encoded as -1 and always count as errors.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import numpy as np
from scipy import sparse

from convssl.evaluate.tasks import k_per_class


def encode_labels(labels: list[str], vocab: list[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(vocab)}
    return np.array([index.get(label, -1) for label in labels], dtype=np.int64)


def fit_probe(X: Any, y: np.ndarray, C: float = 10.0, max_iter: int = 1000):
    """Multinomial logistic regression (lbfgs, L2); convergence warnings are noted, not fatal."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # 1-shot fits have one example per class, which sklearn mistakes for a regression target.
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        clf.fit(X, y)
    return clf


def probe_proba(clf, X: Any, n_classes: int) -> np.ndarray:
    """Class probabilities over all `n_classes` columns (a k-shot fit may miss no class, but be safe)."""
    proba = clf.predict_proba(X)
    if proba.shape[1] == n_classes:
        return proba
    full = np.zeros((proba.shape[0], n_classes), dtype=proba.dtype)
    full[:, clf.classes_] = proba
    return full


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    mask = y_true >= 0
    labels = np.unique(y_true[mask])
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    }


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> dict[str, Any]:
    """Expected calibration error (equal-width bins over [0, 1]) and the per-bin table for plots."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    acc_sum = np.bincount(which, weights=correct.astype(float), minlength=bins)
    nonzero = count > 0
    avg_conf = np.where(nonzero, conf_sum / np.maximum(count, 1), 0.0)
    avg_acc = np.where(nonzero, acc_sum / np.maximum(count, 1), 0.0)
    ece = float(np.sum(count / max(len(confidence), 1) * np.abs(avg_acc - avg_conf)))
    return {"ece": ece, "bins": {"count": count.tolist(), "confidence": avg_conf.tolist(), "accuracy": avg_acc.tolist()}}


def similarities(A: Any, B: Any) -> np.ndarray:
    """Dense A @ B.T for dense or sparse rows (rows are L2-normalised, so this is cosine)."""
    out = A @ B.T
    if sparse.issparse(out):
        out = out.toarray()
    return np.asarray(out, dtype=np.float32)


def class_centroids(X: Any, y: np.ndarray, n_classes: int, normalize: bool = True) -> np.ndarray:
    """Mean feature per class (re-normalised for cosine); a class absent from y gets a zero row."""
    dim = X.shape[1]
    centroids = np.zeros((n_classes, dim), dtype=np.float32)
    for c in range(n_classes):
        rows = X[y == c]
        if rows.shape[0]:
            centroids[c] = np.asarray(rows.mean(axis=0)).ravel()
    if normalize:
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return centroids


def centroid_scores(X_train: Any, y_train: np.ndarray, X: Any, n_classes: int) -> np.ndarray:
    """Cosine similarity of each row of X to each class centroid: [n, n_classes]."""
    return similarities(X, class_centroids(X_train, y_train, n_classes))


def knn_predict(X_train: Any, y_train: np.ndarray, X: Any, n_classes: int, k: int = 10, chunk: int = 1024) -> np.ndarray:
    """Cosine kNN with similarity-weighted votes; chunked so a big test set never builds n x m at once."""
    k = min(k, X_train.shape[0])
    preds = np.empty(X.shape[0], dtype=np.int64)
    for start in range(0, X.shape[0], chunk):
        sims = similarities(X[start : start + chunk], X_train)
        top = np.argpartition(-sims, kth=k - 1, axis=1)[:, :k]
        votes = np.zeros((sims.shape[0], n_classes), dtype=np.float64)
        rows = np.arange(sims.shape[0])[:, None]
        np.add.at(votes, (np.broadcast_to(rows, top.shape), y_train[top]), np.maximum(sims[rows, top], 0.0) + 1e-6)
        preds[start : start + chunk] = votes.argmax(axis=1)
    return preds


def top_confusions(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], n: int = 10) -> list[dict[str, Any]]:
    """Most frequent (gold, predicted) error pairs, for the report table and the confusion plot."""
    pairs = Counter(
        (int(t), int(p)) for t, p in zip(y_true, y_pred) if t != p and t >= 0
    )
    return [
        {"gold": labels[t], "predicted": labels[p], "count": c}
        for (t, p), c in pairs.most_common(n)
    ]


def probe_eval(X_train: Any, y_train: np.ndarray, X_test: Any, y_test: np.ndarray, n_classes: int,
               C: float, max_iter: int, bins: int = 15) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Fit the probe on train, score the test set; returns metrics, predictions, probabilities."""
    clf = fit_probe(X_train, y_train, C=C, max_iter=max_iter)
    proba = probe_proba(clf, X_test, n_classes)
    pred = proba.argmax(axis=1)
    metrics: dict[str, Any] = classification_metrics(y_test, pred)
    rel = reliability(proba.max(axis=1), pred == y_test, bins)
    metrics["ece"] = rel["ece"]
    metrics["reliability"] = rel["bins"]
    return metrics, pred, proba


def kshot_eval(X_train: Any, y_train: np.ndarray, X_test: Any, y_test: np.ndarray, n_classes: int,
               k: int, seeds: list[int], C: float, max_iter: int) -> dict[str, Any]:
    """k examples per class from train (one draw per seed), probe, full test set; mean and std."""
    runs = []
    for seed in seeds:
        idx = k_per_class(y_train.tolist(), k, seed)
        clf = fit_probe(X_train[idx], y_train[idx], C=C, max_iter=max_iter)
        pred = probe_proba(clf, X_test, n_classes).argmax(axis=1)
        runs.append(classification_metrics(y_test, pred))
    return {"k": k, "seeds": list(seeds), **mean_std(runs)}


def mean_std(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample std of accuracy and macro-F1 over repeated runs (seeds), with the runs."""
    acc = np.array([r["accuracy"] for r in runs])
    f1 = np.array([r["macro_f1"] for r in runs])
    return {
        "accuracy": float(acc.mean()),
        "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        "macro_f1": float(f1.mean()),
        "macro_f1_std": float(f1.std(ddof=1)) if len(f1) > 1 else 0.0,
        "runs": runs,
    }
