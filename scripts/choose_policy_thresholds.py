"""Choose the serve policy's thresholds for one classifier on its own validation data.

    python scripts/choose_policy_thresholds.py --classifier runs/demo/banking77_intent --config serve_demo
    python scripts/choose_policy_thresholds.py --classifier runs/clinc150_intent --config serve \
        responses_file=convssl/configs/responses/clinc150_travel.yaml

Rebuilds the classifier's validation split from its `config.yaml` (the same carve as `convssl
finetune`), then prints the clarifying-question margin with the best validation utility and the
small-talk / frustration thresholds that at most 0.5% of the validation questions the bot answers
(those of intents with a written answer, when there are answers) reach, and the
rephrase threshold that at most 5% of pairs of validation questions with different intents reach
(convssl/serve/policy_calibration.py). The conversation tests are never used here.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--config", default="serve_demo", help="serve config (answers, small talk)")
    parser.add_argument("--rate", type=float, default=0.005, help="false alarms allowed on validation questions")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="serve config overrides, e.g. responses_file=... (its answers decide which pairs can be asked about)")
    args = parser.parse_args()

    import numpy as np
    import torch

    from convssl.cli.finetune import FinetuneRunConfig, load_data
    from convssl.config import load_config
    from convssl.downstream.intent_classifier import IntentClassifier, softmax
    from convssl.models.encoder import Encoder
    from convssl.serve.analysis import encoder_path
    from convssl.serve.answers import load_templates
    from convssl.serve.config import ServeConfig
    from convssl.serve.detectors import frustration_detector
    from convssl.serve.policy_calibration import (
        choose_clarify_margin,
        false_alarm_threshold,
        rephrase_threshold,
    )
    from convssl.serve.smalltalk import SmallTalk, load_smalltalk

    torch.set_num_threads(1)
    run = load_config(FinetuneRunConfig, f"{args.classifier}/config.yaml")
    val = [e for e in load_data(run).val if e.label != run.oos_label]
    serve = load_config(ServeConfig, args.config, [f"classifier_path={args.classifier}", *args.overrides])
    clf = IntentClassifier.load(args.classifier)
    texts = [e.text for e in val]
    logits, scores = clf.logits_and_scores(texts)
    probs = softmax(logits)
    index = {label: i for i, label in enumerate(clf.labels)}
    labels = np.array([index[e.label] for e in val])
    threshold = clf.meta.threshold
    understood = scores >= threshold if threshold is not None else probs.max(axis=1) >= 0.5
    templates = load_templates(serve.responses_file)
    answerable = np.array([bool(templates.answers.get(label)) for label in clf.labels]) if templates.answers else None
    # a turn not understood is asked about only when its top two together are as likely as the top
    # two of the in-scope questions the classifier keeps (the same share of validation)
    top2 = np.sort(probs, axis=1)[:, -2:].sum(axis=1)
    pair_floor = float(np.quantile(top2, 1.0 - understood.mean()))
    margin, utilities = choose_clarify_margin(probs, labels, understood, pair_floor, answerable)

    encoder = Encoder.load(encoder_path(serve), max_length=serve.responder.max_length)
    emb = encoder.embed(texts, normalize=True)
    # The detectors must not take the questions the bot answers: with a responses file, those are
    # the validation questions of intents with an answer (a set such as CLINC150 also has intents
    # for greetings and thanks, which the small-talk set should catch).
    questions = answerable[labels] if answerable is not None else np.ones(len(labels), dtype=bool)
    frustration = frustration_detector(encoder, 1.0).scores(emb[questions])
    out = {"validation_questions": len(val), "answered_questions": int(questions.sum()), "calibrated_threshold": threshold,
           "understood": float(understood.mean()), "accuracy_of_understood": float((probs.argmax(1) == labels)[understood].mean()),
           "clarify_margin": margin, "clarify_pair_threshold": pair_floor, "utility_at_margin": utilities[margin], "utility_without_clarifying": utilities[0.0],
           "frustration_threshold": false_alarm_threshold(frustration, args.rate),
           "frustration_score_quantile": float(np.quantile(frustration, 1 - args.rate)),
           "rephrase_threshold": rephrase_threshold(emb, labels)}
    if serve.smalltalk.file:
        talk = SmallTalk(load_smalltalk(serve.smalltalk.file), encoder)
        chat = np.array([s for _, s in talk.match(emb[questions])])
        out["smalltalk_threshold"] = false_alarm_threshold(chat, args.rate)
        out["smalltalk_score_quantile"] = float(np.quantile(chat, 1 - args.rate))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
