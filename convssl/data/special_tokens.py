"""Special tokens shared by the tokenizer, the shards and the pretext objectives.

Roles get their own tokens so that an encoder sees who speaks without learning it from text,
and they are registered as *special* tokens so that no tokenizer ever splits them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


class SpecialTokenError(ValueError):
    """A tokenizer lacks a token that frames dialogues ([EOT], a role token, a separator)."""


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the tokens that frame dialogues, resolved once from the tokenizer.

    WordPiece tokenizers give [CLS]/[SEP]/[MASK]; byte-level BPE ones only <|endoftext|> and
    <pad>, so `bos`/`eos` fall back to whatever boundary token the tokenizer has.
    """

    pad: int
    bos: int
    eos: int
    mask: int | None
    eot: int
    roles: dict[str, int]
    all_special: tuple[int, ...]
    vocab_size: int

    def role(self, name: str) -> int:
        try:
            return self.roles[name]
        except KeyError:
            raise SpecialTokenError(
                f"unknown dialogue role {name!r}; expected one of {sorted(self.roles)}"
            ) from None


def _token_id(tokenizer: Any, token: str | None) -> int | None:
    if token is None:
        return None
    idx = tokenizer.convert_tokens_to_ids(str(token))
    if idx is None or (
        tokenizer.unk_token_id is not None and idx == tokenizer.unk_token_id and token != tokenizer.unk_token
    ):
        return None
    return int(idx)


def special_ids(tokenizer: Any) -> SpecialIds:
    """Resolve framing tokens; fail early, naming the token, if the tokenizer lacks one."""
    eot = _token_id(tokenizer, EOT)
    roles = {role: _token_id(tokenizer, tok) for role, tok in ROLE_TOKENS.items()}
    missing = [t for t, i in [(EOT, eot), *((ROLE_TOKENS[r], i) for r, i in roles.items())] if i is None]
    if missing:
        raise SpecialTokenError(
            f"the tokenizer lacks the dialogue tokens {missing}; load it with "
            "convssl.data.tokenizer.load_tokenizer, which adds them"
        )
    eos = _token_id(tokenizer, tokenizer.sep_token) or _token_id(tokenizer, tokenizer.eos_token)
    bos = _token_id(tokenizer, tokenizer.cls_token) or _token_id(tokenizer, tokenizer.bos_token) or eos
    pad = _token_id(tokenizer, tokenizer.pad_token)
    if eos is None or bos is None:
        raise SpecialTokenError("the tokenizer has neither [SEP] nor an end-of-text token to separate sequences")
    if pad is None:
        pad = eos
    specials = {int(i) for i in tokenizer.all_special_ids} | {eot, eos, bos, pad, *roles.values()}
    return SpecialIds(
        pad=pad,
        bos=bos,
        eos=eos,
        mask=_token_id(tokenizer, tokenizer.mask_token),
        eot=eot,
        roles={r: int(i) for r, i in roles.items()},  # type: ignore[arg-type]
        all_special=tuple(sorted(specials)),
        vocab_size=len(tokenizer),
    )
