"""The ONNX twin of a frozen `Encoder`, checked against it on probe texts before it is used."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from convssl.models.encoder import Encoder
from convssl.models.onnx.export import (
    ExportReport,
    OnnxOptions,
    OnnxUnavailable,
    PooledEncoderGraph,
    build,
    cache_key,
    make_session,
    onnxruntime_available,
    probe_texts,
    write_report,
)
from convssl.models.onnx.jobs import Feeder, Job, length_groups, run_jobs, token_work
from convssl.models.reference import resolve_model_path

LOG = logging.getLogger("convssl.onnx")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.maximum(np.linalg.norm(a, axis=1), 1e-12)
    nb = np.maximum(np.linalg.norm(b, axis=1), 1e-12)
    return (a * b).sum(axis=1) / na / nb


def embedding_check(candidate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Mean and worst cosine between a faster model's embeddings and the reference model's."""
    cos = _cosines(candidate, reference)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}


@dataclass(eq=False)
class OnnxEncoder:
    """Drop-in for `convssl.models.encoder.Encoder` (same `embed`), running an ONNX file.

    `session` runs the pooled-encoder graph at `precision` (int8 or fp32); `work` is the relative
    cost of one token (`token_work`), so that encoders of different sizes share a thread pool
    fairly; `report` is the export check that chose this precision.
    """

    # Fixed cost of one ONNX call in tokens of work (`length_groups`); int8 MiniLM measured here:
    # ~0.7 ms a call against ~0.053 ms a token, i.e. about 12 tokens.
    call_cost: ClassVar[float] = 12.0

    session: Any = field(repr=False)  # an onnxruntime InferenceSession
    tokenizer: Any = field(repr=False)
    pooling: str
    max_length: int
    dim: int
    precision: str
    work: float = 1.0
    report: ExportReport | None = None
    _feeder: Feeder = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._feeder = Feeder(self.tokenizer, self.max_length)

    def jobs(self, texts: Sequence[str], out: np.ndarray, batch_size: int = 64) -> list[Job]:
        """One ONNX call per length group (`length_groups`), each filling its rows of `out` [N, dim]."""
        rows = self._feeder.ids(texts) if len(texts) else []
        jobs = []
        for group in length_groups([len(r) for r in rows], max_batch=batch_size, call_cost=self.call_cost):
            feeds = self._feeder.feeds([rows[i] for i in group])

            def run(group: list[int] = group, feeds: dict[str, np.ndarray] = feeds) -> None:
                out[group] = self.session.run(None, feeds)[0]

            jobs.append(Job(feeds["input_ids"].size * self.work, run))
        return jobs

    def embed(self, texts: Sequence[str], batch_size: int = 64, normalize: bool = False,
              pool: Any | None = None) -> np.ndarray:
        """Like `Encoder.embed`; with a thread pool the length groups run side by side."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        run_jobs(self.jobs(texts, out, batch_size), pool)
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


def onnx_encoder(encoder: Encoder, folder: str | Path, options: OnnxOptions | None = None,
                 probes: Sequence[str] = ()) -> OnnxEncoder | None:
    """The ONNX twin of a loaded `Encoder`, checked against it; None when no ONNX file passes the check.

    `folder` is the model folder the encoder was loaded from (its contents key the cache).
    Raises `OnnxUnavailable` when onnxruntime is not installed.
    """
    if not onnxruntime_available():
        raise OnnxUnavailable("onnxruntime is not installed (pip install onnx onnxruntime, or 'convssl[serve]')")
    options = options or OnnxOptions()
    folder = resolve_model_path(folder)
    config = encoder.model.config
    key = cache_key(folder, "encoder", options, extra=f"pool={encoder.pooling}")
    started = time.perf_counter()
    built, cached = build("encoder", folder, PooledEncoderGraph(encoder.model, encoder.pooling), ["embedding"], config,
                   options, key)
    texts = probe_texts(probes)
    reference = encoder.embed(texts, batch_size=16)
    report = ExportReport("encoder", str(folder), "torch", cached=cached, probes=len(texts))
    candidates = (["int8"] if options.quantize else []) + ["fp32"]
    for precision in candidates:
        session = make_session(built / f"{precision}.onnx", options.threads)
        onnx = OnnxEncoder(session, encoder.tokenizer, encoder.pooling, encoder.max_length, encoder.dim, precision,
                           work=token_work(config))
        check = report.checks[precision] = embedding_check(onnx.embed(texts, batch_size=16), reference)
        need = options.min_cosine if precision == "int8" else options.fp32_min_cosine
        if check["mean_cosine"] >= need:
            report.chosen = precision
            break
        report.reason += f"{precision} mean cosine {check['mean_cosine']:.4f} < {need}; "
    report.export_seconds = round(time.perf_counter() - started, 2)
    write_report(built, report)
    (LOG.info if report.chosen != "torch" and not report.reason else LOG.warning)("ONNX %s", report.summary())
    if report.chosen == "torch":
        return None
    onnx.report = report
    return onnx
