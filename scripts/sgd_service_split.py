"""Hold whole SGD services back from training: the transfer split of docs/evaluation.md.

Choices about the response encoder are meant to hold for services its training never met (the
held-out files 026-030 are mostly such services), so they are checked on services taken out of the
training files, never on the held-out files. This writes the training files without every dialogue
that involves one of `--services` (to `OUT/train/`), and those dialogues as one SGD file of their
own (`OUT/heldback/dialogues_001.json`, a folder `convssl evaluate --task response:` reads):

    python scripts/sgd_service_split.py --out runs/transfer
    convssl prepare runs/transfer/train/*.json --tokenizer MINILM_DIR --out runs/transfer/data
    convssl pretrain --config pretrain_minilm_response --data runs/transfer/data --out runs/transfer/s1 max_steps=600
    convssl evaluate --model runs/transfer/s1 --task response:runs/transfer/heldback response.max_pairs=1500
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The response stages' own data and training files, so that the split follows them.
from results import RESPONSE_TRAIN_FILES, SHARED  # noqa: E402  (the script's sibling module)


def split_by_service(dialogues: list[dict], services: set[str]) -> tuple[list[dict], list[dict]]:
    """(dialogues that touch none of `services`, dialogues that touch one of them)."""
    kept: list[dict] = []
    held: list[dict] = []
    for dialogue in dialogues:
        (held if services & set(dialogue["services"]) else kept).append(dialogue)
    return kept, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sgd", type=Path, default=SHARED / "sgd" / "train",
                        help="folder of SGD dialogues_NNN.json files")
    parser.add_argument("--files", default=f"{RESPONSE_TRAIN_FILES.start}-{RESPONSE_TRAIN_FILES.stop - 1}",
                        help="training file numbers, FIRST-LAST (default: those of scripts/results.py)")
    parser.add_argument("--services", default="Restaurants_1,RideSharing_1,RideSharing_2",
                        help="comma-separated SGD service names to hold back")
    parser.add_argument("--out", type=Path, required=True, help="folder for train/ and heldback/")
    args = parser.parse_args()
    first, last = (int(n) for n in args.files.split("-"))
    services = set(args.services.split(","))
    (args.out / "train").mkdir(parents=True, exist_ok=True)
    (args.out / "heldback").mkdir(parents=True, exist_ok=True)
    held_all: list[dict] = []
    kept_count = 0
    for number in range(first, last + 1):
        name = f"dialogues_{number:03d}.json"
        kept, held = split_by_service(json.loads((args.sgd / name).read_text(encoding="utf-8")), services)
        (args.out / "train" / name).write_text(json.dumps(kept), encoding="utf-8")
        held_all += held
        kept_count += len(kept)
    (args.out / "heldback" / "dialogues_001.json").write_text(json.dumps(held_all), encoding="utf-8")
    per_service = Counter(s for d in held_all for s in d["services"] if s in services)
    print(f"training dialogues kept: {kept_count}; held back: {len(held_all)} ({dict(per_service)})")


if __name__ == "__main__":
    main()
