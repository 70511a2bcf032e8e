"""How high recall@1 can go on an SGD response-selection set: candidates that say the same thing.

SGD annotates every turn with its dialogue acts (act, slot, values). Within a batch of 100
candidates, a reply with the same acts and values as the true one differs from it in wording only,
and the context does not decide wording: a model that reads meaning alone picks among such twins at
random, so its expected recall@1 is the mean of 1 / (1 + twins). This script builds the pairs of
`convssl evaluate --task response:...` (the same function, seed and batches), reports that
ceiling, and, given a model, its recall@1 beside the share of its first picks that carry the true
reply's acts and values (right in meaning), and whether wording helps it among twins (then the
ceiling bounds models that read meaning alone, not every model):

    python scripts/response_ceiling.py --task runs/results/sgd-heldout \\
        --model runs/results/minilm-response-top/final --out runs/results/response-ceiling.json

`--task` takes what the evaluation's response task takes (an SGD folder or file, a prepared
`dialogues/*.jsonl`); the acts are looked up by dialogue id and turn in the SGD files of `--sgd`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

Signature = tuple[tuple[str, str, tuple[str, ...]], ...]


def act_signature(turn: dict[str, Any], values: bool = True) -> Signature:
    """The turn's dialogue acts over all its frames, sorted: (act, slot, lower-cased values)."""
    acts = []
    for frame in turn.get("frames", []):
        for action in frame.get("actions", []):
            vals = tuple(sorted(str(v).lower() for v in action.get("values", []))) if values else ()
            acts.append((action["act"], action.get("slot", ""), vals))
    return tuple(sorted(acts))


def sgd_turns_by_id(sgd: Path) -> dict[str, list[dict[str, Any]]]:
    """Every dialogue's raw turns, by dialogue id, from the SGD files of a folder (or one file)."""
    files = [sgd] if sgd.is_file() else sorted(sgd.glob("dialogues_*.json"))
    if not files:
        raise SystemExit(f"--sgd {sgd}: no SGD dialogues_*.json files")
    return {d["dialogue_id"]: d["turns"] for path in files for d in json.loads(path.read_text(encoding="utf-8"))}


def annotated_pairs(dialogues: Sequence[Any], turns_by_id: dict[str, list[dict[str, Any]]], context_turns: int,
                    max_pairs: int, seed: int) -> tuple[list[tuple[str, str]], list[tuple[Signature, Signature]]]:
    """The evaluation's (context, reply) pairs in its order, with each reply's acts (with and without values)."""
    from convssl.evaluate.response_selection import placed_pairs

    for dialogue in dialogues:
        raw = turns_by_id.get(dialogue.id)
        if raw is None or len(raw) != len(dialogue.turns):
            raise SystemExit(f"dialogue {dialogue.id}: not among the --sgd files with {len(dialogue.turns)} turns; "
                             "the ceiling needs SGD's act annotations of every scored dialogue")
    placed = placed_pairs(list(dialogues), context_turns, max_pairs, seed)
    pairs = [(context, reply) for _, _, context, reply in placed]
    turns = [turns_by_id[dialogues[d].id][i] for d, i, _, _ in placed]
    return pairs, [(act_signature(turn), act_signature(turn, values=False)) for turn in turns]


def twin_counts(batch: Sequence[Signature]) -> list[int]:
    """For each reply of a batch, how many other candidates carry its signature."""
    counts = Counter(batch)
    return [counts[sig] - 1 for sig in batch]


def ceiling(signatures: Sequence[Signature], candidates: int) -> dict[str, float]:
    """Expected recall@1 of a model that tells replies apart by `signatures` and nothing else, batch by
    batch as `recall_at_k` cuts them (a short tail batch dropped), and the share of pairs with a twin."""
    n = len(signatures)
    size = candidates if n >= candidates else n
    twins = [t for b in range(max(n // size, 1)) for t in twin_counts(signatures[b * size:(b + 1) * size])]
    return {"ceiling_recall@1": float(np.mean([1.0 / (1 + t) for t in twins])),
            "share_with_twin": float(np.mean([t > 0 for t in twins])), "pairs": len(twins), "candidates": size}


def first_pick_agreement(sims_by_batch: Sequence[np.ndarray], signatures: Sequence[Signature]) -> float:
    """Share of contexts whose highest-scoring candidate carries the true reply's signature."""
    hits = []
    for b, sims in enumerate(sims_by_batch):
        size = sims.shape[0]
        batch = signatures[b * size:(b + 1) * size]
        hits += [batch[int(np.argmax(row))] == batch[j] for j, row in enumerate(sims)]
    return float(np.mean(hits))


def wording_among_twins(sims_by_batch: Sequence[np.ndarray], signatures: Sequence[Signature]) -> dict[str, float]:
    """On the pairs that have twins, when the first pick is right in meaning: how often it is the true reply
    itself, against the 1 / (1 + twins) of a pick at random among them (does the wording carry a cue?)."""
    exact, chance = [], []
    for b, sims in enumerate(sims_by_batch):
        size = sims.shape[0]
        batch = signatures[b * size:(b + 1) * size]
        for j, (row, twins) in enumerate(zip(sims, twin_counts(batch))):
            top = int(np.argmax(row))
            if twins and batch[top] == batch[j]:
                exact.append(top == j)
                chance.append(1.0 / (1 + twins))
    if not exact:
        return {"pairs": 0}
    return {"pairs": len(exact), "exact_reply": float(np.mean(exact)), "chance": float(np.mean(chance))}


def score_model(model: str, pairs: list[tuple[str, str]], signatures: list[tuple[Signature, Signature]],
                candidates: int, bf16: bool) -> dict[str, float]:
    import torch

    from convssl.evaluate.intent import similarities
    from convssl.evaluate.response_selection import recall_at_k
    from convssl.models.encoder import Encoder

    encoder = Encoder.load(model, pooling="mean", max_length=128)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        ctx = encoder.embed(encoder.prompted([c for c, _ in pairs], "query"), normalize=True)
        resp = encoder.embed(encoder.prompted([r for _, r in pairs], "document"), normalize=True)
    metrics = recall_at_k(ctx, resp, candidates)
    size = metrics["candidates"]
    sims = [similarities(ctx[b * size:(b + 1) * size], resp[b * size:(b + 1) * size])
            for b in range(metrics["pairs"] // size)]
    return {"recall@1": metrics["recall@1"],
            "first_pick_same_acts_and_values": first_pick_agreement(sims, [s for s, _ in signatures]),
            "first_pick_same_acts_and_slots": first_pick_agreement(sims, [s for _, s in signatures]),
            "right_in_meaning_with_twins": wording_among_twins(sims, [s for s, _ in signatures])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, help="dialogues as `convssl evaluate --task response:` takes them")
    parser.add_argument("--sgd", type=Path, default=SHARED / "sgd" / "train",
                        help="SGD dialogues_*.json files (a folder or one file) holding those dialogues' acts")
    parser.add_argument("--model", help="an encoder to score beside the ceiling (a folder `convssl evaluate` takes)")
    parser.add_argument("--context-turns", type=int, default=3, help="turns of context, as response.context_turns")
    parser.add_argument("--max-pairs", type=int, default=3000, help="pairs scored, as response.max_pairs")
    parser.add_argument("--candidates", type=int, default=100, help="candidates per batch, as response.candidates")
    parser.add_argument("--seed", type=int, default=0, help="the evaluation seed that shuffles the pairs")
    parser.add_argument("--bf16", action="store_true", help="embed in bf16 autocast, as `convssl evaluate --bf16`")
    parser.add_argument("--out", type=Path, help="write the numbers here as JSON")
    args = parser.parse_args(argv)

    from convssl.evaluate.tasks import TaskError, TaskSpec, load_dialogues

    try:
        dialogues, _ = load_dialogues(TaskSpec("response", args.task))
    except (TaskError, FileNotFoundError) as exc:
        raise SystemExit(f"--task {args.task}: {exc}") from exc
    pairs, signatures = annotated_pairs(dialogues, sgd_turns_by_id(args.sgd), args.context_turns, args.max_pairs,
                                        args.seed)
    result: dict[str, Any] = {"task": args.task, "context_turns": args.context_turns,
                              "by_acts_and_values": ceiling([s for s, _ in signatures], args.candidates),
                              "by_acts_and_slots": ceiling([s for _, s in signatures], args.candidates)}
    if args.model:
        result["model"] = {"path": args.model,
                           **score_model(args.model, pairs, signatures, args.candidates, args.bf16)}
    for key in ("by_acts_and_values", "by_acts_and_slots"):
        c = result[key]
        print(f"ceiling, replies told apart {key.removeprefix('by_').replace('_', ' ')}: recall@1 "
              f"{100 * c['ceiling_recall@1']:.1f} ({100 * c['share_with_twin']:.1f}% of {c['pairs']} pairs have a "
              f"twin among {c['candidates']} candidates)")
    if args.model:
        m = result["model"]
        print(f"{args.model}: recall@1 {100 * m['recall@1']:.1f}; first pick with the true reply's acts and values "
              f"{100 * m['first_pick_same_acts_and_values']:.1f}, acts and slots {100 * m['first_pick_same_acts_and_slots']:.1f}")
        w = m["right_in_meaning_with_twins"]
        if w["pairs"]:
            print(f"  on the {w['pairs']} pairs with twins where the first pick is right in meaning, it is the true reply "
                  f"{100 * w['exact_reply']:.1f}% of the time (a pick at random among the twins: {100 * w['chance']:.1f}%)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
