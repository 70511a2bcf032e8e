"""The ONNX twin of an `IntentClassifier`: ONNX Runtime runs the forward pass, the parent's code
decides (threshold, out-of-scope score, top-k), so both backends decide alike.

Export, caching and scheduling live in `convssl.models.onnx`; this module only adds what needs the
classifier: the check that the twin decides like torch, and the twin itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convssl.downstream.intent_classifier import POOLED_KINDS, IntentClassifier, softmax
from convssl.models.onnx import export
from convssl.models.onnx.export import ExportReport, OnnxOptions
from convssl.models.onnx.jobs import Feeder, Job, length_groups, run_jobs, token_work

LOG = logging.getLogger("convssl.onnx")


def classifier_check(candidate: Any, reference: Any, texts: Sequence[str]) -> dict[str, float]:
    """How often a faster classifier decides like the reference: top-1 intent, in/out of scope."""
    ref_logits, ref_scores = reference.logits_and_scores(texts, batch_size=16)
    logits, scores = candidate.logits_and_scores(texts, batch_size=16)
    probs, ref_probs = softmax(logits), softmax(ref_logits)
    threshold = reference.meta.threshold
    same_scope = 1.0 if threshold is None else float(((scores < threshold) == (ref_scores < threshold)).mean())
    return {"top1_agreement": float((probs.argmax(1) == ref_probs.argmax(1)).mean()),
            "scope_agreement": same_scope, "max_abs_prob_diff": float(np.abs(probs - ref_probs).max())}


class OnnxIntentClassifier(IntentClassifier):
    """An `IntentClassifier` whose forward pass runs in ONNX Runtime; decisions (threshold,
    out-of-scope score, top-k) are the parent's code, so both backends decide alike."""

    # ~0.17 ms a call against ~0.02 ms a token for the int8 4x256 BERT measured here
    call_cost: float = 9.0

    def __init__(self, base: IntentClassifier, session: Any, precision: str):
        super().__init__(base.model, base.tokenizer, base.meta, head=base.head, oos_stats=base.oos_stats,
                         memory=base.memory)
        self.session = session
        self.precision = precision
        self.report: ExportReport | None = None
        self._feeder = Feeder(base.tokenizer, base.meta.max_length)

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.session.run(None, feeds)
        if self.meta.kind in POOLED_KINDS:
            emb = torch.nn.functional.normalize(torch.from_numpy(outputs[0]).float(), dim=-1)
            return self.head_logits(emb), emb
        return torch.from_numpy(outputs[0]).float(), torch.from_numpy(outputs[1]).float()

    def _forward(self, texts: Sequence[str], want_features: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = self._feeder.ids(texts)
        logits, features = self._run(self._feeder.feeds(rows))
        return logits, features if want_features else None

    def jobs(self, texts: Sequence[str], logits: np.ndarray, scores: np.ndarray,
             batch_size: int = 64) -> list[Job]:
        """One ONNX call per token-length group, each filling its rows of `logits` and `scores`."""
        rows = self._feeder.ids(texts) if len(texts) else []
        want_features = self.meta.score == "mahalanobis"
        work = token_work(self.model.config)
        jobs = []
        for group in length_groups([len(r) for r in rows], max_batch=batch_size, call_cost=self.call_cost):
            feeds = self._feeder.feeds([rows[i] for i in group])

            def run(group: list[int] = group, feeds: dict[str, np.ndarray] = feeds) -> None:
                batch_logits, features = self._run(feeds)
                logits[group] = batch_logits.numpy()
                scores[group] = self._score(batch_logits, features if want_features else None).numpy()

            jobs.append(Job(feeds["input_ids"].size * work, run))
        return jobs

    def logits_and_scores(self, texts: Sequence[str], batch_size: int = 64,
                          pool: Any | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Like the parent's, but batched by token-length groups (see `length_groups`)."""
        logits = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        scores = np.zeros(len(texts), dtype=np.float32)
        with torch.inference_mode():
            run_jobs(self.jobs(texts, logits, scores, batch_size), pool)
        return logits, scores


def onnx_classifier(classifier: IntentClassifier, folder: str | Path, options: OnnxOptions | None = None,
                    probes: Sequence[str] = ()) -> OnnxIntentClassifier | None:
    """The ONNX twin of a loaded `IntentClassifier`, or None when no ONNX file agrees with torch.

    The check on the probe texts: top-1 agreement >= `min_agreement` and the same in/out-of-scope
    decision on the same share (int8), or near-identical probabilities (fp32).
    """
    if not export.onnxruntime_available():
        raise export.OnnxUnavailable("onnxruntime is not installed (pip install onnx onnxruntime, or 'convssl[serve]')")
    options = options or OnnxOptions()
    folder = Path(folder)
    meta = classifier.meta
    model = classifier.model
    if meta.kind in POOLED_KINDS:
        graph: torch.nn.Module = export.PooledEncoderGraph(model, meta.pooling)
        names = ["embedding"]
    else:
        graph = export.SequenceClassifierGraph(model, meta.pooling)
        names = ["logits", "features"]
    key = export.cache_key(folder, "classifier", options, extra=f"{meta.kind}/{meta.pooling}")
    started = time.perf_counter()
    built, cached = export.build("classifier", folder, graph, names, model.config, options, key)
    texts = export.probe_texts(probes, classifier.labels)
    report = ExportReport("classifier", str(folder), "torch", cached=cached, probes=len(texts))
    onnx = None
    for precision in (["int8"] if options.quantize else []) + ["fp32"]:
        onnx = OnnxIntentClassifier(classifier, export.make_session(built / f"{precision}.onnx", options.threads), precision)
        check = report.checks[precision] = classifier_check(onnx, classifier, texts)
        if precision == "int8":
            ok = min(check["top1_agreement"], check["scope_agreement"]) >= options.min_agreement
            need = f"agreement >= {options.min_agreement}"
        else:
            ok = check["top1_agreement"] == 1.0 and check["max_abs_prob_diff"] < 1e-3
            need = "fp32 identical decisions"
        if ok:
            report.chosen = precision
            break
        report.reason += (f"{precision} failed {need} (top-1 {check['top1_agreement']:.4f}, "
                          f"scope {check['scope_agreement']:.4f}); ")
    report.export_seconds = round(time.perf_counter() - started, 2)
    export.write_report(built, report)
    (LOG.info if report.chosen != "torch" and not report.reason else LOG.warning)("ONNX %s", report.summary())
    if report.chosen == "torch" or onnx is None:
        return None
    onnx.report = report
    return onnx
