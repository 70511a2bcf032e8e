"""Map speaker names to roles: user/agent for task-oriented logs, A/B for peer chat.

Pretraining objectives condition on who speaks, so every reader must agree on the roles. Known
names of customers and systems become user/agent; anything else is a peer conversation whose first
speaker is A and every other speaker is B.
"""

from __future__ import annotations

from collections.abc import Iterable

USER_NAMES = frozenset({"user", "usr", "customer", "client", "human", "caller", "guest", "patient"})
AGENT_NAMES = frozenset(
    {"system", "sys", "agent", "assistant", "bot", "operator", "support", "representative", "rep", "staff",
     "clerk", "ai", "chatbot", "advisor"}
)


def known_role(speaker: str) -> str | None:
    name = speaker.strip().lower()
    if name in USER_NAMES:
        return "user"
    if name in AGENT_NAMES:
        return "agent"
    if name in ("a", "b"):
        return name.upper()
    return None


def infer_roles(speakers: Iterable[str]) -> dict[str, str]:
    """Role per distinct speaker of one dialogue, in order of first appearance."""
    order = list(dict.fromkeys(speakers))
    known = {s: known_role(s) for s in order}
    task_roles = {r for r in known.values() if r in ("user", "agent")}
    if task_roles:
        other = "agent" if task_roles == {"user"} else "user"
        return {s: r if r in ("user", "agent") else other for s, r in known.items()}
    if order and all(r in ("A", "B") for r in known.values()):
        return {s: str(r) for s, r in known.items()}
    return {s: "A" if i == 0 else "B" for i, s in enumerate(order)}
