"""ONNX Runtime for frozen encoders: export, quantisation, caching, checks and call scheduling.

`export` builds and caches the files, `jobs` schedules calls, `encoder` is the checked twin of an
`Encoder`. The intent-classifier twin needs the classifier, so it lives one layer up in
`convssl.downstream.onnx_classifier`; serving and any distillation code use both from there.
"""

from convssl.models.onnx.encoder import OnnxEncoder, embedding_check, onnx_encoder
from convssl.models.onnx.export import (
    ExportReport,
    OnnxOptions,
    OnnxUnavailable,
    default_cache_dir,
    make_session,
    onnxruntime_available,
    probe_texts,
)
from convssl.models.onnx.jobs import Job, length_groups, run_jobs, token_work

__all__ = [
    "ExportReport", "Job", "OnnxEncoder", "OnnxOptions", "OnnxUnavailable", "default_cache_dir", "embedding_check",
    "length_groups", "make_session", "onnx_encoder", "onnxruntime_available", "probe_texts", "run_jobs",
    "token_work",
]
