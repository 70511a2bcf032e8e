"""Settings of `convssl serve`: one dataclass so a deployment is one YAML file plus overrides."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class EscalationConfig:
    """When a turn counts as understood, when the bot asks which of two intents was meant, and when
    it hands a conversation to a person.

    `confidence_threshold`: null (default) = "not understood" is the served classifier's own
    out-of-scope decision, with the threshold it calibrated on validation data
    (`convssl_intent.json`); a number additionally requires that top-1 probability.
    `clarify_margin`: top-1 minus top-2 probability below which the bot asks "A or B?" instead of
    answering (or, for a turn not understood, instead of falling back when the two together pass the
    calibrated threshold); 0 = never ask.
    A single uncertain answer is often fine (users rephrase), so it takes `low_confidence_turns`
    turns not understood in a row; an explicit request for a person escalates at once, and so does
    frustration ("this is useless") in a turn that carries no understood question.
    """

    confidence_threshold: float | None = None
    clarify_margin: float = 0.1
    low_confidence_turns: int = 2
    escalate_out_of_scope: bool = True
    human_request_threshold: float = 0.55
    human_request_intents: list[str] = field(default_factory=lambda: ["human_agent", "talk_to_human", "speak_to_human"])
    human_request_phrases: list[str] = field(default_factory=list)
    frustration_threshold: float = 0.6
    frustration_phrases: list[str] = field(default_factory=list)


@dataclass
class SmallTalkConfig:
    """Curated small talk (`convssl/serve/smalltalk.py`): topics with examples and fitting replies.

    `file`: YAML of topics (empty = no curated small talk); `threshold`: minimum cosine to a topic's
    example (and nearer than every near miss) for its reply.
    """

    file: str = ""
    threshold: float = 0.6


@dataclass
class ResponderConfig:
    """The dual-encoder response bank used for small talk and intents without a template.

    `bank_size: 0` turns it off (a bot that only says what was written for it).
    """

    bank_file: str = ""
    bank_size: int = 3000
    threshold: float = 0.6
    max_length: int = 48
    # A response-selection dual encoder (a `pretrain_minilm_response` run) for the bank alone: it
    # embeds the user's turn as a context and ranks the bank's *responses*, as it was trained to.
    # Empty: the shared `encoder_path` model matches the turn against the bank's contexts.
    encoder_path: str = ""


@dataclass
class BatchingConfig:
    """How the models run: the per-turn cost that decides how many chat turns a second fit.

    `backend`: "auto" runs both models in ONNX Runtime when it is installed (about 3x faster than
    PyTorch per turn on CPU; exported once and cached under `onnx_cache_dir`, default
    ~/.cache/convssl/onnx), else PyTorch; "onnx" insists; "torch" never exports.
    `quantize_*`: allow int8 weights. An int8 model is only used when it passes a check against
    the fp32 model at start-up on probe texts — mean cosine >= `min_cosine` for the encoder,
    top-1 and in/out-of-scope agreement >= `min_agreement` for the classifier — otherwise fp32 is
    served and the log says why. `torch_threads`: intra-op threads of each model in either backend.
    `model_workers`: threads that run a batch's model calls side by side (the classifier's and the
    encoder's length groups); 2 fits a 2-core machine, 1 runs them one after the other.
    """

    max_batch: int = 64
    max_wait_ms: float = 0.0
    torch_threads: int = 1
    model_workers: int = 2
    bf16: bool = False
    backend: str = "auto"
    onnx_cache_dir: str = ""
    quantize_encoder: bool = True
    quantize_classifier: bool = True
    min_cosine: float = 0.98
    min_agreement: float = 0.97
    cache_size: int = 4096


@dataclass
class LimitsConfig:
    """What one client may ask of the server, so one user cannot slow down or fill it for others.

    `max_body_bytes`: larger request bodies get 413 before more than that is read.
    `body_timeout_s`: a body that trickles in slower than this gets 408.
    `max_sessions_per_minute`: new conversations per client address (0 = off).
    `max_queue`: chat turns waiting for the models; beyond it 503 + Retry-After at once.
    `model_timeout_s`: the longest a turn waits for the models before 503 + Retry-After.
    """

    max_message_chars: int = 1000
    requests_per_minute: int = 30
    max_sessions_per_minute: int = 60
    max_body_bytes: int = 65536
    body_timeout_s: float = 10.0
    max_queue: int = 512
    model_timeout_s: float = 10.0


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    db_path: str = "convssl_serve.sqlite3"
    classifier_path: str = ""
    encoder_path: str = ""
    responses_file: str = ""
    bot_name: str = "Convssl bot"
    agent_token: str = ""
    cors_origins: list[str] = field(default_factory=list)
    fallback_reply: str = "Sorry, I did not get that. Could you rephrase it?"
    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    responder: ResponderConfig = field(default_factory=ResponderConfig)
    smalltalk: SmallTalkConfig = field(default_factory=SmallTalkConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    log_level: str = "warning"

    def resolved_agent_token(self) -> str:
        """The config wins; the environment lets deployments keep the secret out of YAML files."""
        return self.agent_token or os.environ.get("CONVSSL_AGENT_TOKEN", "")
