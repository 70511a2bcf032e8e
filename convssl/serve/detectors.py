"""What the user is asking for beyond an intent: a person, or relief from a bot that is not helping.

Each detector is nearest-neighbour over embedded example phrasings with embedded near misses: a
turn counts when it is nearer to an example than to every near miss, and at least `threshold`
similar. Paraphrases ("can a real human help me") match without being listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

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


class ExampleDetector:
    """Embedding nearest-neighbour with negatives: does a turn say what the examples say?"""

    def __init__(self, encoder: Any, examples: Sequence[str], negatives: Sequence[str], threshold: float):
        self.threshold = threshold
        self.positives = encoder.embed(list(examples), normalize=True)
        self.negatives = encoder.embed(list(negatives), normalize=True)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Max similarity to an example, or 0 where a near-miss example is nearer."""
        pos = (embeddings @ self.positives.T).max(axis=1)
        neg = (embeddings @ self.negatives.T).max(axis=1)
        return np.where(pos > neg, pos, 0.0)


def human_request_detector(encoder: Any, threshold: float, extra_examples: Sequence[str] = ()) -> ExampleDetector:
    return ExampleDetector(encoder, [*HUMAN_REQUEST_EXAMPLES, *extra_examples], HUMAN_REQUEST_NEGATIVES, threshold)


# Frustration with the bot itself, not with a bank problem: "my card is blocked, this is awful" is a
# question (the classifier answers it), "you are not helping" is a reason to call a person.
FRUSTRATION_EXAMPLES = [
    "this is useless",
    "you are not helping me at all",
    "that's not what I asked",
    "you don't understand me",
    "this bot is terrible",
    "I'm getting really annoyed with this",
    "stop giving me the same answer",
    "that answer makes no sense",
    "are you even listening",
    "this is so frustrating",
    "I already told you that",
    "that doesn't help",
    "what a waste of time",
    "why can't you understand a simple question",
    "wrong answer again",
    "I'm fed up with this chat",
    "you keep misunderstanding me",
    "none of this is helpful",
]
FRUSTRATION_NEGATIVES = [
    "my card is not working",
    "the app is not working",
    "my transfer has not arrived",
    "why was I charged twice",
    "my payment was declined",
    "I don't understand this fee",
    "the exchange rate was wrong",
    "I was charged the wrong amount",
    "my top up failed again",
    "thanks, that helps",
    "ok that makes sense",
    "I can't log in to the app",
    "my PIN is not working",
    "I think someone stole my card",
]


def frustration_detector(encoder: Any, threshold: float, extra_examples: Sequence[str] = ()) -> ExampleDetector:
    return ExampleDetector(encoder, [*FRUSTRATION_EXAMPLES, *extra_examples], FRUSTRATION_NEGATIVES, threshold)
