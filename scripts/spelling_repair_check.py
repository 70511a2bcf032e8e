"""What spelling repair (`repair_spelling`, convssl/serve/spelling.py) does to a classifier's decisions,
measured apart from the conversation tests:

    python scripts/spelling_repair_check.py --classifier runs/demo/banking77_intent

On the classifier's own validation questions (rebuilt from its config.yaml), clean and with one
seeded typo in each word of 4+ letters with probability 0.5 (swap, drop or double a letter), and on
CLINC150's 100 out-of-scope validation questions: how many are answered right / answered wrong
(accepted by the out-of-scope threshold) without and with the repair of rejected turns.
"""

from __future__ import annotations

import argparse
import json
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def typo(text: str, rng: random.Random) -> str:
    words = text.split()
    for i, w in enumerate(words):
        if len(w) >= 4 and w.isalpha() and rng.random() < 0.5:
            j = rng.randrange(1, len(w) - 1)
            kind = rng.choice(("swap", "drop", "double"))
            if kind == "swap":
                w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
            elif kind == "drop":
                w = w[:j] + w[j + 1:]
            else:
                w = w[:j] + w[j] + w[j:]
            words[i] = w
    return " ".join(words)


def score(preds, rows) -> dict[str, int]:
    right = sum(not p.out_of_scope and p.intent == label for p, (_, label) in zip(preds, rows))
    wrong = sum(not p.out_of_scope and p.intent != label for p, (_, label) in zip(preds, rows))
    return {"right": right, "wrong": wrong, "rejected": len(rows) - right - wrong}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--config", default="serve_demo", help="serve config (its answers are the bot's vocabulary)")
    parser.add_argument("--clinc", default="../shared/data/clinc150/data_full.json")
    args = parser.parse_args()

    import torch

    from convssl.cli.finetune import FinetuneRunConfig, load_data
    from convssl.config import load_config
    from convssl.downstream.intent_classifier import IntentClassifier
    from convssl.serve.answers import load_templates
    from convssl.serve.config import ServeConfig
    from convssl.serve.spelling import SpellingRepair

    torch.set_num_threads(1)
    run = load_config(FinetuneRunConfig, f"{args.classifier}/config.yaml")
    val = [e for e in load_data(run).val if e.label != run.oos_label]
    clf = IntentClassifier.load(args.classifier)
    templates = load_templates(load_config(ServeConfig, args.config).responses_file)
    repair = SpellingRepair([*clf.labels, *(a for answers in templates.answers.values() for a in answers)])
    rng = random.Random(0)
    sets = {"clean": [(e.text, e.label) for e in val], "typos": [(typo(e.text, rng), e.label) for e in val]}
    with open(args.clinc, encoding="utf-8") as handle:
        sets["clinc_oos_val"] = [(t, None) for t, _ in json.load(handle)["oos_val"]]
    out = {}
    for name, rows in sets.items():
        texts = [t for t, _ in rows]
        first = clf.predict(texts)
        fixed = {i: repair.repair(t) for i, t in enumerate(texts) if first[i].out_of_scope}
        fixed = {i: t for i, t in fixed.items() if t != texts[i]}
        again = dict(zip(fixed, clf.predict(list(fixed.values())))) if fixed else {}
        final = [again[i] if i in again and not again[i].out_of_scope else p for i, p in enumerate(first)]

        out[name] = {"n": len(rows), "without": score(first, rows), "with_repair": score(final, rows),
                     "retried": len(fixed)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
