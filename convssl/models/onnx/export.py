"""ONNX export of encoders and classifiers: trace, fuse, quantise, cache, open a session.

Why: a chat turn needs two small transformer passes over a short text, and on a 2-core CPU server
they are the whole cost of a turn. PyTorch eager mode spends much of it on per-operator overhead
(MiniLM on one short utterance: 5.5 ms in torch fp32, 1.8 ms in ONNX Runtime fp32, 0.65 ms in ONNX
Runtime int8); in batches ONNX Runtime int8 is compute-bound at ~50-60 us per MiniLM token.

How: a model is exported once (`torch.onnx.export`), some BERT subgraphs are fused by ONNX Runtime's
transformer optimizer (embedding LayerNorm, GELU) and its MatMul weights are quantised to int8 per
output channel (dynamic quantisation: activations are scaled per call, so no calibration data is
needed). Quantisation changes the numbers, so every export is *checked* against the PyTorch model on
probe texts: the int8 file is only used when its embeddings stay within `min_cosine` of torch (for
a classifier: top-1 agreement of at least `min_agreement`); otherwise the fp32 ONNX file is used,
and if even that disagrees, the caller gets `None` and keeps PyTorch. The checks and the choice are
logged and written beside the files in ``report.json``.

Files are cached under a cache folder (``$CONVSSL_CACHE_DIR/onnx`` or ``~/.cache/convssl/onnx``),
keyed by a hash of the model folder's contents, the export settings and the library versions, so a
restart loads in a fraction of a second and a changed model is never served from a stale file.
Without the `onnx` and `onnxruntime` packages (in the `serve` and `export` extras) everything here
reports "unavailable" and callers stay on PyTorch.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from convssl.models.encoder import pool

LOG = logging.getLogger("convssl.onnx")
FORMAT_VERSION = 2  # bump when the export recipe changes: old cache entries are then ignored
OPSET = 17
# Varied short texts for the export check when the caller has none of its own: questions, small
# talk, a long sentence (truncation), punctuation-only and one-word inputs (padding edge cases).
DEFAULT_PROBES = [
    "hi", "thanks!", "?", "hello, how are you today?", "what can you do for me",
    "When will my new card arrive? I ordered it two weeks ago and it is still not here.",
    "I want to talk to a real person", "how do I change my PIN", "my card payment was declined",
    "Is there a fee for topping up by bank transfer from another country?",
    "i lost my phone and my card, please help", "what is the exchange rate for euros",
    "the weather is lovely today, isn't it", "can you recommend a good book",
    "Why was I charged twice for the same transaction at the supermarket yesterday evening?",
    "cancel", "refund", "ok", "I would like to close my account and move my money elsewhere",
]


class OnnxUnavailable(RuntimeError):
    """onnxruntime (or onnx) is not installed; use the PyTorch model instead."""


def onnxruntime_available() -> bool:
    """Whether the ONNX path can run here (both the runtime and the exporter's onnx package)."""
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


@dataclass
class OnnxOptions:
    """How to build and run the ONNX files.

    `threads` is ONNX Runtime's intra-op thread count: 1 by default, because short chat turns give
    small matrices that parallelise poorly inside one call; the server instead runs separate calls
    side by side (`Job`, `run_jobs`). Spinning is disabled: idle threads must not fight every other
    process for the cores. `min_cosine` is the mean cosine to the torch embedding that the int8 file
    must keep (MiniLM: 0.993 measured); `min_agreement` the classifier's top-1 and in/out-of-scope
    agreement with torch.
    """

    quantize: bool = True
    optimize: bool = True
    threads: int = 1
    cache_dir: str = ""
    min_cosine: float = 0.98
    min_agreement: float = 0.97
    # fp32 ONNX is the same arithmetic as torch up to operator order: anything less is a broken export.
    fp32_min_cosine: float = 0.9999


@dataclass
class ExportReport:
    """What was built, what the check measured, and which file is served."""

    kind: str
    model: str
    chosen: str  # "int8" | "fp32" | "torch"
    checks: dict[str, dict[str, float]] = field(default_factory=dict)
    reason: str = ""
    export_seconds: float = 0.0
    cached: bool = False
    probes: int = 0

    def summary(self) -> str:
        parts = [f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in vals.items()) for name, vals in self.checks.items()]
        cached = " (cached)" if self.cached else ""
        return f"{self.kind} {self.model} -> {self.chosen}{cached}; " + "; ".join(parts) + (
            f"; {self.reason}" if self.reason else "")


def default_cache_dir() -> Path:
    base = os.environ.get("CONVSSL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "convssl")
    return Path(base) / "onnx"


# ---------------------------------------------------------------------------------------------- graphs
class PooledEncoderGraph(torch.nn.Module):
    """last_hidden_state -> masked mean (or CLS) inside the graph, so one small array comes back."""

    def __init__(self, model: torch.nn.Module, pooling: str):
        super().__init__()
        self.model = model
        self.pooling = pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, self.pooling)  # type: ignore[arg-type]


class SequenceClassifierGraph(torch.nn.Module):
    """Logits plus the pooled last hidden state (the Mahalanobis out-of-scope score needs it)."""

    def __init__(self, model: torch.nn.Module, pooling: str):
        super().__init__()
        self.model = model
        self.pooling = pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.logits, pool(out.hidden_states[-1], attention_mask, self.pooling)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- build
def _hash_folder(folder: Path) -> str:
    """Content hash of the files that define the weights and the graph (not READMEs or logs)."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file() and (path.suffix in {".safetensors", ".bin", ".json"} or path.name == "vocab.txt"):
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def cache_key(folder: Path, kind: str, options: OnnxOptions, extra: str = "") -> str:
    import onnxruntime
    import transformers

    parts = [str(FORMAT_VERSION), kind, extra, _hash_folder(folder), f"opt={options.optimize}",
             f"ort={onnxruntime.__version__}", f"torch={torch.__version__}", f"tf={transformers.__version__}"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


@contextlib.contextmanager
def _eager_attention(model: torch.nn.Module):
    """Trace the plain matmul-softmax attention: the standard BERT pattern that ONNX Runtime's tools
    know, without the SDPA mask code's Python branches on shapes (which the tracer warns about).
    Measured: same cosine and speed as the SDPA trace once quantised."""
    previous = getattr(model.config, "_attn_implementation", None)
    switch = hasattr(model, "set_attn_implementation") and previous not in (None, "eager")
    if switch:
        try:
            model.set_attn_implementation("eager")
        except (ValueError, AttributeError, TypeError):
            switch = False
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(previous)


def _export(graph: torch.nn.Module, out: Path, output_names: list[str], vocab_size: int) -> None:
    ids = torch.randint(5, max(6, vocab_size - 1), (2, 7), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # padded row: the traced mask arithmetic must stay data-dependent
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    axes.update({name: {0: "batch"} for name in output_names})
    with warnings.catch_warnings(), torch.no_grad(), _eager_attention(graph.model):
        warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes
        torch.onnx.export(graph.eval(), (ids, mask), str(out), input_names=["input_ids", "attention_mask"],
                          output_names=output_names, dynamic_axes=axes, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)


def _optimize(src: Path, dst: Path, config: Any) -> bool:
    """Fuse BERT subgraphs (embedding + LayerNorm, bias + GELU); False (keep src) for other models.

    Attention and skip-LayerNorm fusion stay off: with them the int8 MiniLM was ~30% slower per
    token on the development machine (QAttention and SkipLayerNormalization kernels: 79 vs 54 us a
    token at 32x24, same cosine), while the unfused MatMuls become DynamicQuantizeMatMul.
    """
    if getattr(config, "model_type", "") not in {"bert", "roberta", "distilbert", "xlm-roberta", "electra"}:
        return False
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model_type = "bert" if config.model_type in {"roberta", "xlm-roberta", "electra"} else config.model_type
    fusion = FusionOptions(model_type)
    fusion.enable_attention = False
    fusion.enable_skip_layer_norm = False
    fusion.enable_bias_skip_layer_norm = False
    logging.disable(logging.WARNING)  # the optimizer logs every fusion
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimized = optimize_model(str(src), model_type=model_type, num_heads=int(config.num_attention_heads),
                                       hidden_size=int(config.hidden_size), opt_level=1, optimization_options=fusion,
                                       only_onnxruntime=False)
            optimized.save_model_to_file(str(dst))
    finally:
        logging.disable(logging.NOTSET)
    return True


def _quantize(src: Path, dst: Path) -> None:
    """int8 weights, one scale per output channel: per-tensor scales lose the small rows of a weight."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fused ops (com.microsoft domain) have no ONNX shape inference: their outputs are float.
    logging.disable(logging.WARNING)  # a line per node at INFO, generic advice at WARNING (root logger)
    try:
        quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        logging.disable(logging.NOTSET)


def make_session(path: Path, threads: int = 1) -> Any:
    """An InferenceSession that does not spin: idle worker threads must give the cores back."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _loadable(folder: Path, threads: int) -> bool:
    """A cached folder whose files ONNX Runtime can open (not damaged since it was written)."""
    try:
        for name in ("fp32.onnx", "int8.onnx"):
            make_session(folder / name, threads)
        return True
    except Exception as exc:  # InvalidProtobuf, NoSuchFile, ... (onnxruntime has no common base)
        LOG.warning("cached ONNX files in %s cannot be loaded (%s); exporting again", folder, exc)
        return False


def build(kind: str, folder: Path, graph: torch.nn.Module, output_names: list[str], config: Any,
           options: OnnxOptions, key: str) -> tuple[Path, bool]:
    """Export (+ fuse + quantise) into a fresh folder, then move it into the cache atomically, so
    that a crash or a concurrent start never leaves a half-written file under the final name."""
    root = Path(options.cache_dir) if options.cache_dir else default_cache_dir()
    final = root / f"{kind}-{key}"
    if (final / "fp32.onnx").exists():
        if _loadable(final, options.threads):
            return final, True
        shutil.rmtree(final, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=root))
    try:
        raw = tmp / "raw.onnx"
        _export(graph, raw, output_names, int(getattr(config, "vocab_size", 1000)))
        fp32 = tmp / "fp32.onnx"
        if not (options.optimize and _optimize(raw, fp32, config)):
            raw.replace(fp32)
        raw.unlink(missing_ok=True)
        _quantize(fp32, tmp / "int8.onnx")
        try:
            tmp.replace(final)
        except OSError:  # another process finished the same export first: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, False


def write_report(folder: Path, report: ExportReport) -> None:
    with contextlib.suppress(OSError):
        tmp = folder / f".report-{os.getpid()}.json"
        tmp.write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
        tmp.replace(folder / "report.json")


def probe_texts(probes: Sequence[str] = (), labels: Sequence[str] = ()) -> list[str]:
    """The check's texts: the defaults, the caller's, and label names read as phrases."""
    return list(dict.fromkeys([*DEFAULT_PROBES, *probes, *(label.replace("_", " ") for label in labels)]))
