"""Special tokens shared by the tokenizer, the shards and the pretext objectives.

Roles get their own tokens so that an encoder sees who speaks without learning it from text,
and they are registered as *special* tokens so that no tokenizer ever splits them.
"""

from __future__ import annotations

# One token per dialogue role (`convssl.data.dialogue.ROLES`).
ROLE_TOKENS: dict[str, str] = {"user": "[USR]", "agent": "[SYS]", "A": "[A]", "B": "[B]"}

# End of turn: lets a causal model learn where a speaker stops.
EOT = "[EOT]"

# BERT-style specials, in the order that gives them ids 0..4 in a trained WordPiece vocabulary.
WORDPIECE_SPECIALS: list[str] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# GPT-2-style specials for byte-level BPE (ids 0 and 1 in a trained vocabulary).
BPE_SPECIALS: list[str] = ["<|endoftext|>", "<pad>"]


def dialogue_special_tokens() -> list[str]:
    """Role tokens then EOT: the tokens every convssl tokenizer must keep whole."""
    return [*ROLE_TOKENS.values(), EOT]
