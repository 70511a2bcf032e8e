"""How much the fast serving models change the bot's decisions, on BANKING77 test questions.

`convssl serve` checks each int8 / ONNX model against its fp32 PyTorch original at start-up on a few
hundred probe texts; this script measures the same on the 3,080 BANKING77 test questions plus the
chitchat bank's turns, for every backend, so that the speed-up's price in quality is on record:
classifier accuracy and agreement with fp32 torch (top-1, out-of-scope decision), encoder cosine to
fp32 torch, and the two decisions the encoder drives (asks-for-a-person, bank reply chosen).

    python scripts/serve_quality.py --classifier runs/demo/banking77_intent
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classifier", default="runs/demo/banking77_intent")
    ap.add_argument("--shared-data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--cache-dir", default="", help="ONNX cache folder (default: a temporary one)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from convssl.downstream.intent_classifier import IntentClassifier, softmax
    from convssl.downstream.onnx_classifier import onnx_classifier
    from convssl.models.encoder import Encoder
    from convssl.models.onnx import OnnxOptions, embedding_check, onnx_encoder
    from convssl.serve.analysis import quantize_int8
    from convssl.serve.config import ServeConfig
    from convssl.serve.detectors import (
        HUMAN_REQUEST_EXAMPLES,
        HUMAN_REQUEST_NEGATIVES,
        human_request_detector,
    )
    from convssl.serve.response_bank import ResponseBank, chitchat_bank

    with (Path(args.shared_data) / "banking77" / "test.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    texts, gold = [r["text"] for r in rows], [r["category"] for r in rows]
    cache = args.cache_dir or tempfile.mkdtemp(prefix="convssl-onnx-")
    results: dict = {"texts": len(texts)}

    # ---- classifier
    base = IntentClassifier.load(args.classifier)
    variants = {"torch-fp32": base}
    for quant in (False, True):
        opts = OnnxOptions(quantize=quant, cache_dir=cache, min_agreement=0.0, min_cosine=0.0)
        clf = onnx_classifier(IntentClassifier.load(args.classifier), args.classifier, opts)
        variants[f"onnx-{clf.precision}"] = clf
    tq = IntentClassifier.load(args.classifier)
    tq.model = quantize_int8(tq.model)
    variants["torch-int8"] = tq
    ref_logits, ref_scores = base.logits_and_scores(texts)
    threshold = base.meta.threshold
    out = {}
    for name, clf in variants.items():
        t0 = time.perf_counter()
        logits, scores = clf.logits_and_scores(texts)
        secs = time.perf_counter() - t0
        pred = [clf.labels[i] for i in softmax(logits).argmax(1)]
        rejected = scores < threshold if threshold is not None else np.zeros(len(texts), bool)
        ref_rejected = ref_scores < threshold if threshold is not None else rejected
        out[name] = {
            "accuracy": round(float(np.mean([p == g for p, g in zip(pred, gold)])), 4),
            "accuracy_after_oos": round(float(np.mean([p == g and not r for p, g, r in zip(pred, gold, rejected)])), 4),
            "top1_agreement_with_fp32": round(float((logits.argmax(1) == ref_logits.argmax(1)).mean()), 4),
            "oos_decision_agreement": round(float((rejected == ref_rejected).mean()), 4),
            "ms_per_text_batch64": round(secs * 1000 / len(texts), 3),
        }
        print("classifier", name, json.dumps(out[name]), flush=True)
    results["classifier"] = out

    # ---- encoder: cosine, person detector, bank reply
    serve = ServeConfig()
    from convssl.serve.analysis import encoder_path

    path = encoder_path(serve)
    enc = Encoder.load(path, max_length=serve.responder.max_length)
    more = chitchat_bank(serve.responder.bank_size + 500)
    entries = more[: serve.responder.bank_size]
    chat_turns = [e.key for e in more[serve.responder.bank_size:]]  # small talk that is not in the bank
    queries = texts + chat_turns + list(HUMAN_REQUEST_EXAMPLES)
    encoders = {"torch-fp32": enc}
    for quant in (False, True):
        opts = OnnxOptions(quantize=quant, cache_dir=cache, min_cosine=0.0)
        e = onnx_encoder(Encoder.load(path, max_length=serve.responder.max_length), path, opts)
        encoders[f"onnx-{e.precision}"] = e
    eq = Encoder.load(path, max_length=serve.responder.max_length)
    eq.model = quantize_int8(eq.model)
    encoders["torch-int8"] = eq
    ref = None
    out = {}
    for name, e in encoders.items():
        t0 = time.perf_counter()
        emb = e.embed(queries, normalize=True)
        secs = time.perf_counter() - t0
        bank = ResponseBank(entries, e)
        det = human_request_detector(e, serve.escalation.human_request_threshold)
        human = det.scores(emb) >= serve.escalation.human_request_threshold
        replies = bank.best(emb)
        bank_ok = [s >= serve.responder.threshold for _, s in replies]
        chosen = (emb @ bank.keys.T).argmax(axis=1)
        if ref is None:
            ref = (emb, human, replies, bank_ok, emb @ bank.keys.T)
        ref_sims = ref[4]
        answered = np.asarray(ref[3])
        # how much worse, judged by the fp32 model, the entry this model picks is than fp32's pick
        regret = ref_sims.max(axis=1) - ref_sims[np.arange(len(chosen)), chosen]
        row = {**{k: round(v, 4) for k, v in embedding_check(emb, ref[0]).items()},
               "person_flags_banking_test": int(human[: len(texts)].sum()),
               "person_flags_chitchat": int(human[len(texts): len(texts) + len(chat_turns)].sum()),
               "person_examples_caught": int(human[len(texts) + len(chat_turns):].sum()),
               "person_decision_agreement": round(float((human == ref[1]).mean()), 4),
               "bank_reply_same_entry": round(float(np.mean([a[0] == b[0] for a, b in zip(replies, ref[2])])), 4),
               "bank_threshold_agreement": round(float(np.mean([a == b for a, b in zip(bank_ok, ref[3])])), 4),
               "bank_answers": int(sum(bank_ok)),
               "bank_same_reply_where_fp32_answers": round(float(np.mean(
                   [a[0] == b[0] for a, b, ok in zip(replies, ref[2], ref[3]) if ok])), 4),
               "bank_fp32_cosine_lost_where_fp32_answers": round(float(regret[answered].mean()), 4),
               "ms_per_text_batch64": round(secs * 1000 / len(queries), 3)}
        out[name] = row
        print("encoder", name, json.dumps(row), flush=True)
    results["encoder"] = out
    results["negatives"] = len(HUMAN_REQUEST_NEGATIVES)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
