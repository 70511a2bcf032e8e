"""What the bot does with a user turn: answer, small talk, ask which of two intents, fall back, or
call a person.

Plain Python on top of an `Analysis` (analysis.py), so its rules are easy to read, test and
configure. The thresholds come from calibration where there is one: "not understood" is the served
classifier's own validation-calibrated out-of-scope decision unless the config sets a number.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convssl.serve.analysis import Analysis, Brain
from convssl.serve.answers import Templates
from convssl.serve.config import EscalationConfig, ServeConfig
from convssl.serve.smalltalk import SmallTalk

# "Not understood" below this top-1 probability when the classifier has no calibrated threshold
# (e.g. trained without validation data) and the config sets none.
UNCALIBRATED_THRESHOLD = 0.5
KINDS = ("answer", "smalltalk", "bank", "clarify", "fallback", "escalate", "agent")


@dataclass
class SessionState:
    status: str = "bot"  # bot | queued | agent | resolved
    low_conf_streak: int = 0  # turns not understood in a row, whatever they asked
    # The two intents of a clarifying question, until the next user turn (memory only: after a
    # restart the user's answer is classified like any other turn).
    options: list[str] = field(default_factory=list)
    # Of those turns, how many in a row re-asked the one before, and the embedding of the last one
    # (memory only: after a restart the next turn starts a new run of re-asking).
    repeats: int = 0
    unclear: np.ndarray | None = field(default=None, repr=False)

    def after(self, decision: Decision) -> None:
        """Carry what the bot just decided into the next turn (the status is the route's business)."""
        escalated = decision.escalate
        self.low_conf_streak = 0 if escalated else decision.streak
        self.repeats = 0 if escalated else decision.repeats
        self.unclear = None if escalated else decision.unclear
        self.options = decision.options


@dataclass
class Decision:
    reply: str
    intent: str | None
    confidence: float
    top: list[tuple[str, float]]
    out_of_scope: bool
    escalate: bool = False
    reason: str | None = None
    source: str = "template"  # template | bank | smalltalk | clarify | fallback | escalation
    streak: int = 0
    options: list[str] = field(default_factory=list)
    understood: bool = False
    repeats: int = 0  # of the `streak`, the turns in a row that re-asked the one before
    unclear: np.ndarray | None = field(default=None, repr=False)  # embedding of the last turn not understood
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """What happened, in the words of the conversation tests (one of `KINDS`)."""
        return {"template": "answer", "escalation": "escalate"}.get(self.source, self.source)


ESCALATION_REPLY = {
    "asked_for_human": "Of course — I'm passing you to a member of our team. They'll reply here shortly.",
    "frustrated": "I'm sorry this isn't helping. I'm passing you to a member of our team; "
                  "they'll reply here shortly.",
    "low_confidence": "I'm not sure I can help with that, so I'm passing you to a member of our team. "
                      "They'll reply here shortly.",
}
CLARIFY_REPLY = "Just to be sure I answer the right question: is it about {a}, or about {b}?"
QUEUED_NOTICE = "A member of our team will answer shortly; your message is with them."
AGENT_NOTICE = "Your message was sent to {agent}."

_FIRST = re.compile(r"\b(first|1st|former|the 1|number one|option one|option 1)\b")
_SECOND = re.compile(r"\b(second|2nd|latter|the 2|number two|option two|option 2)\b")


def intent_title(intent: str) -> str:
    """`card_arrival` -> "card arrival", `Refund_not_showing_up` -> "refund not showing up": how a
    clarifying question names an intent."""
    return " ".join(intent.replace("_", " ").replace("-", " ").replace("?", " ").split()).lower()


class Policy:
    """In order: a request for a person escalates; frustration with the bot escalates; curated small
    talk gets its reply; an understood turn gets its intent's answer, or a clarifying question when
    the top two intents are close; a turn not understood falls back (or asks when two intents share
    its probability) and escalates only when the user is stuck: `low_confidence_turns` in a row that
    each re-ask the one before, or `max_unclear_turns` in a row whatever they ask. The detectors'
    thresholds are set where at most 0.5% of in-domain validation questions reach them, so they go first."""

    def __init__(self, templates: Templates, escalation: EscalationConfig, responder_threshold: float,
                 fallback: str, seed: int | None = None, calibrated: bool = False,
                 calibrated_threshold: float | None = None, smalltalk: SmallTalk | None = None,
                 smalltalk_threshold: float = 1.0, no_answer: str | None = None):
        self.templates = templates
        self.rules = escalation
        self.bank_threshold = responder_threshold
        self.fallback = fallback
        # an understood intent without a written answer: say so (not "I did not get that") and offer a person
        self.no_answer = no_answer or fallback
        self.calibrated_threshold = calibrated_threshold
        # the threshold on top-1 probability on top of the classifier's own out-of-scope decision
        self.min_confidence = escalation.confidence_threshold
        if self.min_confidence is None and not calibrated:
            self.min_confidence = UNCALIBRATED_THRESHOLD
        self.smalltalk = smalltalk
        self.smalltalk_threshold = smalltalk_threshold
        self.rng = random.Random(seed)

    @classmethod
    def for_brain(cls, brain: Brain, config: ServeConfig, seed: int | None = None) -> Policy:
        """The policy of a loaded bot: its answers, small talk and the classifier's calibration."""
        return cls(brain.templates, config.escalation, config.responder.threshold, config.fallback_reply, seed=seed,
                   calibrated=brain.calibrated, calibrated_threshold=brain.calibrated_threshold,
                   smalltalk=brain.smalltalk, smalltalk_threshold=config.smalltalk.threshold,
                   no_answer=config.no_answer_reply)

    # ------------------------------------------------------------------ what the turn is
    def asks_for_human(self, a: Analysis) -> bool:
        by_intent = a.intent in self.rules.human_request_intents and not a.out_of_scope
        # "am I chatting with a machine?" is near both detectors: the nearer one says what it is
        by_detector = a.human_score >= self.rules.human_request_threshold and not self._is_smalltalk(a, a.human_score)
        return by_intent or by_detector

    def frustrated(self, a: Analysis) -> bool:
        return a.frustration_score >= self.rules.frustration_threshold and not self._is_smalltalk(
            a, a.frustration_score)

    def _is_smalltalk(self, a: Analysis, than: float = 0.0) -> bool:
        """A curated small-talk topic matches, and nearer than `than` (another detector's score)."""
        return (self.smalltalk is not None and bool(a.smalltalk_topic) and a.smalltalk_score >= self.smalltalk_threshold
                and a.smalltalk_score > than)

    def understood(self, a: Analysis) -> bool:
        """In scope by the classifier's calibrated rule, and above `confidence_threshold` if one is set
        (or the classifier has no calibrated rule)."""
        if a.out_of_scope or not a.intent:
            return False
        return self.min_confidence is None or a.confidence >= self.min_confidence

    def close_pair(self, a: Analysis, understood: bool) -> list[str]:
        """The top two intents when they are too close to pick one, both answerable, and (for a turn
        not understood) together as likely as the calibrated threshold asks of one intent."""
        if self.rules.clarify_margin <= 0 or len(a.top) < 2:
            return []
        (first, p1), (second, p2) = a.top[0], a.top[1]
        if p1 - p2 >= self.rules.clarify_margin:
            return []
        if not all(self.templates.answers.get(i) for i in (first, second)):
            return []
        if not understood:
            floor = self.rules.clarify_pair_threshold
            if floor is None:
                floor = self.min_confidence if self.min_confidence is not None else self.calibrated_threshold
            if floor is None or p1 + p2 < floor:
                return []
        return [first, second]

    def picked_option(self, text: str, options: list[str]) -> str | None:
        """The user's answer to "A or B?": an ordinal ("the first one") or words of one option only."""
        lower = text.lower()
        first, second = bool(_FIRST.search(lower)), bool(_SECOND.search(lower))
        if first != second:
            return options[0] if first else options[1]
        words = set(re.findall(r"[a-z]+", lower))
        titles = [set(intent_title(o).split()) for o in options]
        hits = [o for o, own, other in zip(options, titles, titles[::-1]) if (own - other) & words]
        return hits[0] if len(hits) == 1 else None

    # ------------------------------------------------------------------ the decision
    def decide(self, a: Analysis, state: SessionState, slots: dict[str, str] | None = None) -> Decision:
        base = dict(intent=a.intent, confidence=a.confidence, top=a.top, out_of_scope=a.out_of_scope)
        if self.asks_for_human(a):
            return self._escalate("asked_for_human", base)
        if state.options:
            picked = self.picked_option(a.text, state.options)
            answer = self.templates.render(picked, slots, self.rng) if picked else None
            if answer:
                return Decision(answer, source="template", understood=True,
                                **{**base, "intent": picked, "out_of_scope": False})
        if self.frustrated(a):
            return self._escalate("frustrated", base)
        # small talk and clarifying questions neither end nor extend a run of turns not understood
        kept = dict(streak=state.low_conf_streak, repeats=state.repeats, unclear=state.unclear)
        if self._is_smalltalk(a):
            return Decision(self.smalltalk.reply(a.smalltalk_topic, self.rng), source="smalltalk", **kept, **base)
        understood = self.understood(a)
        pair = self.close_pair(a, understood)
        if pair:
            reply = CLARIFY_REPLY.format(a=intent_title(pair[0]), b=intent_title(pair[1]))
            return Decision(reply, source="clarify", options=pair, **kept, **base)
        template = self.templates.render(a.intent, slots, self.rng) if understood and a.intent else None
        if template:
            return Decision(template, source="template", understood=True, **base)
        if a.bank_score >= self.bank_threshold and a.bank_reply:
            return Decision(a.bank_reply, source="bank", understood=understood, **base)
        if understood:
            reply = self.no_answer.replace("{intent}", intent_title(a.intent or ""))
            return Decision(reply, source="fallback", understood=True, **base)
        return self._not_understood(a, state, base)

    def re_asks(self, a: Analysis, state: SessionState) -> bool:
        """Whether this turn asks again what the last turn not understood asked (a rephrase, or the same
        words): the fallback asked the user to rephrase, and the bot still does not understand."""
        if state.unclear is None or a.embedding is None:
            return False
        return float(np.dot(a.embedding, state.unclear)) >= self.rules.rephrase_threshold

    def stuck(self, streak: int, repeats: int) -> bool:
        """Escalate for low confidence only when the user is stuck: re-asked `low_confidence_turns` times
        in a row without being understood, or not understood `max_unclear_turns` times in a row. A new
        question the bot cannot place (a follow-up, another topic) is not being stuck yet."""
        if not self.rules.escalate_out_of_scope:
            return False
        limit = self.rules.max_unclear_turns
        return repeats >= max(1, self.rules.low_confidence_turns) or (limit > 0 and streak >= limit)

    def _not_understood(self, a: Analysis, state: SessionState, base: dict[str, Any]) -> Decision:
        streak = state.low_conf_streak + 1
        repeats = state.repeats + 1 if self.re_asks(a, state) else 1
        if self.stuck(streak, repeats):
            return self._escalate("low_confidence", base, streak=streak)
        return Decision(self.fallback, source="fallback", streak=streak, repeats=repeats, unclear=a.embedding, **base)

    @staticmethod
    def _escalate(reason: str, base: dict[str, Any], streak: int = 0) -> Decision:
        return Decision(ESCALATION_REPLY[reason], escalate=True, reason=reason, source="escalation", streak=streak,
                        **base)
