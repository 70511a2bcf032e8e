"""End-to-end conversation tests: short written conversations, run against a bot over its HTTP API.

The format (YAML; one file holds many conversations):

```yaml
conversations:
  - name: card_not_here_then_a_person
    tags: [banking, paraphrase]            # optional; the report breaks accuracy down by tag
    turns:
      - user: my new card still hasn't shown up
        expect: card_arrival               # an intent: answered with that intent's answer
      - user: thanks!
        expect: smalltalk                  # or: clarify, fallback, escalate, agent
      - user: can I talk to someone
        expect: escalate
        reason: asked_for_human            # optional: asked_for_human | frustrated | low_confidence
      - agent: Hi, Sam here. How can I help?   # an agent replies (needs the agent API)
      - user: it came this morning
        expect: agent                      # the message goes to the agent, the bot stays silent
      - resolve: card_arrival              # the agent resolves (a label, or true)
```

`clarify` may name the intents the question must offer (`options: [a, b]`). Every mistake in a
file stops before any turn is sent, with one line naming the file, line and conversation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

OUTCOMES = ("smalltalk", "clarify", "fallback", "escalate", "agent")
REASONS = ("asked_for_human", "frustrated", "low_confidence")
TESTER = "conversation-test"
_LINE = "__line__"


class ConversationFileError(ValueError):
    """A conversation file is malformed; the message is one line naming file, line and problem."""


@dataclass
class Expect:
    kind: str  # "answer" (with intent) or one of OUTCOMES
    intent: str | None = None
    reason: str | None = None
    options: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.intent if self.kind == "answer" and self.intent else self.kind


@dataclass
class Step:
    role: str  # user | agent | resolve
    text: str
    line: int
    expect: Expect | None = None
    label: str | None = None  # resolve: the label the agent gives


@dataclass
class Conversation:
    name: str
    steps: list[Step]
    line: int
    tags: list[str] = field(default_factory=list)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping, so errors can name it."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping[_LINE] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def load_conversations(path: str | Path, labels: Sequence[str] | None = None) -> list[Conversation]:
    """Read and check one conversation file; with `labels`, every expected intent must be one of them."""
    path = Path(path)
    if not path.is_file():
        raise ConversationFileError(f"{path}: no such conversation file")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConversationFileError(f"{where}: not valid YAML: {problem}") from exc
    except UnicodeDecodeError as exc:
        raise ConversationFileError(f"{path}: not UTF-8 text") from exc
    if not isinstance(data, dict) or not isinstance(data.get("conversations"), list) or not data["conversations"]:
        raise ConversationFileError(f"{path}:1: expected a mapping with a non-empty list 'conversations'")
    conversations, seen = [], set()
    for number, item in enumerate(data["conversations"], 1):
        conv = _conversation(item, number, path, labels)
        if conv.name in seen:
            raise ConversationFileError(f"{path}:{conv.line}: conversation name {conv.name!r} is used twice")
        seen.add(conv.name)
        conversations.append(conv)
    return conversations


def _conversation(item: Any, number: int, path: Path, labels: Sequence[str] | None) -> Conversation:
    if not isinstance(item, dict):
        raise ConversationFileError(f"{path}: conversation {number} must be a mapping with 'name' and 'turns'")
    line = item[_LINE]
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConversationFileError(f"{path}:{line}: conversation {number} needs a 'name'")
    unknown = sorted(set(item) - {"name", "tags", "turns", _LINE})
    if unknown:
        raise ConversationFileError(f"{path}:{line}: conversation {name!r}: unknown key(s) {unknown}")
    tags = item.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ConversationFileError(f"{path}:{line}: conversation {name!r}: 'tags' must be a list of words")
    turns = item.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ConversationFileError(f"{path}:{line}: conversation {name!r} needs a non-empty list 'turns'")
    steps = [_step(turn, i, name, line, path, labels) for i, turn in enumerate(turns, 1)]
    if not any(s.role == "user" for s in steps):
        raise ConversationFileError(f"{path}:{line}: conversation {name!r} has no user turn")
    return Conversation(name, steps, line, tags)


def _step(turn: Any, index: int, name: str, conv_line: int, path: Path, labels: Sequence[str] | None) -> Step:
    line = turn.get(_LINE, conv_line) if isinstance(turn, dict) else conv_line
    where = f"{path}:{line}: conversation {name!r} turn {index}"
    if not isinstance(turn, dict):
        raise ConversationFileError(f"{where}: a turn is a mapping such as {{user: ..., expect: ...}}")
    roles = [r for r in ("user", "agent", "resolve") if r in turn]
    if len(roles) != 1:
        raise ConversationFileError(f"{where}: a turn has exactly one of 'user', 'agent' or 'resolve'")
    role = roles[0]
    allowed = {"user": {"user", "expect", "reason", "options"}, "agent": {"agent"}, "resolve": {"resolve"}}[role]
    unknown = sorted(set(turn) - allowed - {_LINE})
    if unknown:
        raise ConversationFileError(f"{where}: unknown key(s) {unknown} in a {role} turn")
    if role == "resolve":
        value = turn["resolve"]
        if value is not True and not (isinstance(value, str) and value.strip()):
            raise ConversationFileError(f"{where}: 'resolve' is true or the label the agent gives")
        return Step("resolve", "", line, label=None if value is True else value.strip())
    text = turn[role]
    if not isinstance(text, str | int | float) or not str(text).strip():
        raise ConversationFileError(f"{where}: empty {role} turn: '{role}' needs the text that is said")
    if role == "agent":
        return Step("agent", str(text).strip(), line)
    return Step("user", str(text).strip(), line, expect=_expect(turn, where, labels))


def _expect(turn: dict[str, Any], where: str, labels: Sequence[str] | None) -> Expect:
    value = turn.get("expect")
    if not isinstance(value, str) or not value.strip():
        raise ConversationFileError(f"{where}: 'expect' is missing: an intent or one of {list(OUTCOMES)}")
    value = value.strip()
    reason, options = turn.get("reason"), turn.get("options") or []
    if value in OUTCOMES:
        expect = Expect(value)
    elif labels is not None and value not in labels:
        raise ConversationFileError(f"{where}: unknown intent {value!r}: not a label of the classifier "
                                    f"and not one of {list(OUTCOMES)}")
    else:
        expect = Expect("answer", intent=value)
    if reason is not None:
        if expect.kind != "escalate" or reason not in REASONS:
            raise ConversationFileError(f"{where}: 'reason' goes with expect: escalate and is one of {list(REASONS)}")
        expect.reason = reason
    if options:
        if expect.kind != "clarify" or not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise ConversationFileError(f"{where}: 'options' goes with expect: clarify and lists intents")
        if labels is not None and (bad := [o for o in options if o not in labels]):
            raise ConversationFileError(f"{where}: unknown intent(s) {bad} in 'options'")
        expect.options = list(options)
    return expect


# ---------------------------------------------------------------------------------------------- running
@dataclass
class TurnResult:
    role: str
    text: str
    reply: str = ""
    expected: str | None = None  # the expectation's label (an intent or an outcome word)
    got: str | None = None  # the same words for what the bot did
    kind: str | None = None
    intent: str | None = None
    confidence: float | None = None
    reason: str | None = None
    options: list[str] = field(default_factory=list)
    correct: bool | None = None
    unexpected_escalation: bool = False
    # the classifier's best intents as [intent, probability], also when the bot did not answer one:
    # a fallback whose first guess was the expected intent reads differently from one that was lost
    top: list[list[Any]] = field(default_factory=list)


@dataclass
class ConversationResult:
    name: str
    tags: list[str]
    turns: list[TurnResult]

    @property
    def checked(self) -> list[TurnResult]:
        return [t for t in self.turns if t.correct is not None]

    @property
    def passed(self) -> bool:
        return all(t.correct for t in self.checked)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "tags": self.tags, "passed": self.passed, "turns": [asdict(t) for t in self.turns]}


def outcome_label(response: dict[str, Any]) -> str:
    """What the bot did, in the words of `expect`: the intent it answered, or the outcome word."""
    kind = response.get("kind")
    if kind == "answer":
        return str(response.get("intent"))
    if kind == "bank":
        return "smalltalk"
    return str(kind)


def meets(expect: Expect, response: dict[str, Any]) -> bool:
    kind, intent = response.get("kind"), response.get("intent")
    if expect.kind == "answer":
        # A bot without a written answer for the intent still shows that it understood it.
        understood_only = response.get("understood") and kind in ("fallback", "bank")
        return intent == expect.intent and (kind == "answer" or bool(understood_only))
    if expect.kind == "smalltalk":
        return kind in ("smalltalk", "bank")
    if expect.kind == "clarify":
        return kind == "clarify" and set(expect.options) <= set(response.get("options") or [])
    if expect.kind == "escalate":
        return kind == "escalate" and (expect.reason is None or response.get("reason") == expect.reason)
    return kind == expect.kind


class ChatClient:
    """The bot's HTTP API as the tests use it: chat, and the agent's take / reply / resolve."""

    def __init__(self, url: str, agent_token: str = "", timeout: float = 60.0):
        import httpx

        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout)
        self.headers = {"Authorization": f"Bearer {agent_token}"} if agent_token else {}

    def close(self) -> None:
        self.http.close()

    def _post(self, path: str, body: dict[str, Any], agent: bool = False) -> dict[str, Any]:
        for attempt in range(5):
            response = self.http.post(f"{self.url}{path}", json=body, headers=self.headers if agent else None)
            if response.status_code != 429:
                break
            time.sleep(2.0 * (attempt + 1))  # the server's per-conversation rate limit
        if response.status_code >= 400:
            try:
                detail = response.json().get("error", response.text)
            except ValueError:
                detail = response.text
            raise RuntimeError(f"POST {path} -> {response.status_code}: {detail}")
        return response.json()

    def say(self, session_id: str | None, text: str) -> dict[str, Any]:
        body = {"text": text} if session_id is None else {"session_id": session_id, "text": text}
        response = self._post("/v1/chat", body)
        if "kind" not in response:
            raise RuntimeError(f"{self.url} does not say what kind of reply it gave ('kind' in /v1/chat): "
                               "serve it with this version of convssl")
        return response

    def agent_reply(self, session_id: str, text: str) -> None:
        self._post(f"/v1/agent/sessions/{session_id}/take", {"agent": TESTER}, agent=True)
        self._post(f"/v1/agent/sessions/{session_id}/reply", {"text": text, "agent": TESTER}, agent=True)

    def resolve(self, session_id: str, label: str | None) -> None:
        body: dict[str, Any] = {"agent": TESTER}
        if label:
            body["label"] = label
        self._post(f"/v1/agent/sessions/{session_id}/resolve", body, agent=True)


def run_conversation(client: ChatClient, conv: Conversation) -> ConversationResult:
    session_id: str | None = None
    turns: list[TurnResult] = []
    for step in conv.steps:
        if step.role == "user":
            response = client.say(session_id, step.text)
            session_id = response["session_id"]
            expect = step.expect
            assert expect is not None
            correct = meets(expect, response)
            turns.append(TurnResult(
                "user", step.text, reply=response.get("reply", ""), expected=expect.label,
                got=outcome_label(response), kind=response.get("kind"), intent=response.get("intent"),
                confidence=response.get("confidence"), reason=response.get("reason"),
                options=list(response.get("options") or []), correct=correct,
                unexpected_escalation=response.get("kind") == "escalate" and expect.kind != "escalate",
                top=[[str(label), float(p)] for label, p in (response.get("top") or [])[:2]]))
        elif session_id is None:
            raise RuntimeError(f"conversation {conv.name!r}: an agent step before any user turn")
        elif step.role == "agent":
            client.agent_reply(session_id, step.text)
            turns.append(TurnResult("agent", step.text))
        else:
            client.resolve(session_id, step.label)
            turns.append(TurnResult("resolve", step.label or ""))
    return ConversationResult(conv.name, conv.tags, turns)


def run_conversations(client: ChatClient, conversations: Sequence[Conversation],
                      progress: Callable[[int], None] | None = None) -> list[ConversationResult]:
    """Each conversation in a fresh session, one after the other."""
    results = []
    for conv in conversations:
        results.append(run_conversation(client, conv))
        if progress:
            progress(1)
    return results


def needs_agent_api(conversations: Sequence[Conversation]) -> bool:
    return any(s.role in ("agent", "resolve") for c in conversations for s in c.steps)
