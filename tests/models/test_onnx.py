"""The ONNX Runtime path against PyTorch, on tiny BERTs made here: same numbers, checked int8, cache.

Each model is a 2-layer, 64-wide BERT with random weights and MiniLM's real tokenizer, saved as a
Hugging Face folder, so the exporter, the BERT fusions, the quantiser and the padding of
varied-length batches all run exactly as they do on the served models.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import need_module

need_module("onnxruntime", "onnxruntime")
need_module("onnxruntime", "onnx")

from convssl.downstream.onnx_classifier import onnx_classifier  # noqa: E402
from convssl.models.onnx import OnnxOptions, length_groups, onnx_encoder  # noqa: E402
from convssl.models.onnx.export import DEFAULT_PROBES, probe_texts  # noqa: E402

TEXTS = ["hi", "When will my new card arrive? I ordered it two weeks ago and it is still not here.",
         "how do I change my PIN", "?", "can I talk to a real person please", "thanks a lot"]


def _bert_config(vocab: int, **extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=128, **extra)


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path))


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory, tokenizer) -> Path:
    import torch
    from transformers import BertModel

    folder = tmp_path_factory.mktemp("onnx-models") / "tiny-encoder"
    torch.manual_seed(0)
    BertModel(_bert_config(len(tokenizer))).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def _classifier_folder(root: Path, tokenizer, score: str = "max_softmax", seed: int = 1) -> Path:
    import torch
    from transformers import BertForSequenceClassification

    from convssl.downstream.intent_classifier import IntentClassifier, IntentMeta, fit_mahalanobis

    labels = ["card_arrival", "change_pin", "lost_card", "exchange_rate", "top_up"]
    torch.manual_seed(seed)
    config = _bert_config(len(tokenizer), num_labels=len(labels), id2label=dict(enumerate(labels)),
                          label2id={label: i for i, label in enumerate(labels)})
    model = BertForSequenceClassification(config).eval()
    meta = IntentMeta(score=score, threshold=0.21 if score == "max_softmax" else None, max_length=32)
    stats = None
    if score == "mahalanobis":
        base = IntentClassifier(model, tokenizer, IntentMeta(max_length=32))
        feats = base._forward(DEFAULT_PROBES, want_features=True)[1].detach().numpy()
        stats = fit_mahalanobis(feats, np.arange(len(feats)) % len(labels), len(labels))
        meta.threshold = -1e9
    folder = root / f"tiny-classifier-{score}-{seed}"
    IntentClassifier(model, tokenizer, meta, oos_stats=stats).save(folder)
    return folder


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# ---------------------------------------------------------------------------------------------- batching
def test_length_groups_cover_every_text_once_and_cut_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=50).tolist()
    groups = length_groups(lengths, max_batch=16, call_cost=6.0)
    assert sorted(i for g in groups for i in g) == list(range(50))
    assert all(1 <= len(g) <= 16 for g in groups)
    padded = sum(len(g) * max(lengths[i] for i in g) for g in groups)
    one_batch = 50 * max(lengths)
    assert padded < 0.6 * one_batch  # the point of grouping: far fewer padded tokens
    assert length_groups([7] * 10, max_batch=64) == [list(range(10))]  # equal lengths: one call
    assert length_groups([], max_batch=8) == []
    # a huge per-call cost means one call (up to max_batch), zero cost means one call per length
    assert len(length_groups(lengths, max_batch=64, call_cost=1e9)) == 1
    assert len(length_groups(lengths, max_batch=64, call_cost=0.0)) <= len(set(lengths))


# ---------------------------------------------------------------------------------------------- encoder
def test_onnx_encoder_matches_torch_and_int8_passes_its_check(encoder_folder, tmp_path):
    from convssl.models.encoder import Encoder

    torch_enc = Encoder.load(encoder_folder, max_length=48)
    ref = torch_enc.embed(TEXTS)

    fp32 = onnx_encoder(torch_enc, encoder_folder, OnnxOptions(quantize=False, cache_dir=str(tmp_path)))
    assert fp32 is not None and fp32.precision == "fp32"
    got = fp32.embed(TEXTS)  # one call per length group, padded rows included
    assert _cosine(got, ref).min() > 0.9999
    np.testing.assert_allclose(got, ref, atol=2e-4)
    # a text's embedding does not depend on what it was batched with
    np.testing.assert_allclose(fp32.embed(TEXTS[:1])[0], got[0], atol=2e-5)
    np.testing.assert_allclose(fp32.embed(TEXTS, normalize=True),
                               ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=2e-4)

    int8 = onnx_encoder(torch_enc, encoder_folder, OnnxOptions(quantize=True, cache_dir=str(tmp_path)))
    assert int8 is not None and int8.precision == "int8", int8.report if int8 else None
    q = int8.embed(TEXTS)
    assert _cosine(q, ref).mean() >= 0.98
    assert not np.allclose(q, ref, atol=1e-5)  # it really is a different (quantised) model
    report = int8.report
    assert report.checks["int8"]["mean_cosine"] >= 0.98 and report.probes >= len(DEFAULT_PROBES)
    folder = next(Path(tmp_path).glob("encoder-*"))
    import onnx

    ops = {name: {n.op_type for n in onnx.load(str(folder / name)).graph.node} for name in ("fp32.onnx", "int8.onnx")}
    assert "BiasGelu" in ops["fp32.onnx"], "the ONNX Runtime BERT optimizer did not run"
    assert "MatMulInteger" in ops["int8.onnx"], ops
    saved = json.loads((folder / "report.json").read_text())
    assert saved["chosen"] == "int8" and "int8" in saved["checks"]


def test_failing_the_int8_check_falls_back_to_fp32_and_says_why(encoder_folder, tmp_path):
    from convssl.models.encoder import Encoder

    torch_enc = Encoder.load(encoder_folder, max_length=48)
    strict = OnnxOptions(quantize=True, cache_dir=str(tmp_path), min_cosine=1.01)  # int8 cannot pass
    enc = onnx_encoder(torch_enc, encoder_folder, strict)
    assert enc is not None and enc.precision == "fp32"
    assert "int8" in enc.report.reason and enc.report.chosen == "fp32"
    impossible = OnnxOptions(quantize=True, cache_dir=str(tmp_path), min_cosine=1.01, fp32_min_cosine=1.01)
    assert onnx_encoder(torch_enc, encoder_folder, impossible) is None  # caller keeps torch


def test_exports_are_cached_by_content_and_rebuilt_when_damaged(encoder_folder, tmp_path):
    import torch
    from transformers import BertModel

    from convssl.models.encoder import Encoder

    opts = OnnxOptions(cache_dir=str(tmp_path))
    first = onnx_encoder(Encoder.load(encoder_folder), encoder_folder, opts)
    folder = next(Path(tmp_path).glob("encoder-*"))
    stamp = (folder / "fp32.onnx").stat().st_mtime_ns
    again = onnx_encoder(Encoder.load(encoder_folder), encoder_folder, opts)
    assert not first.report.cached and again.report.cached
    assert (folder / "fp32.onnx").stat().st_mtime_ns == stamp  # not exported again

    # other weights in another folder: another cache entry, never the stale file
    changed = tmp_path / "changed"
    model = BertModel.from_pretrained(str(encoder_folder))
    with torch.no_grad():
        model.encoder.layer[0].output.dense.weight.mul_(3.0)
    model.save_pretrained(str(changed))
    Encoder.load(encoder_folder).tokenizer.save_pretrained(str(changed))
    other = onnx_encoder(Encoder.load(changed), changed, opts)
    assert len(list(Path(tmp_path).glob("encoder-*"))) == 2
    assert not np.allclose(other.embed(TEXTS), again.embed(TEXTS), atol=1e-3)

    (folder / "int8.onnx").write_bytes(b"not an onnx file")  # damaged on disk
    rebuilt = onnx_encoder(Encoder.load(encoder_folder), encoder_folder, opts)
    assert rebuilt is not None and not rebuilt.report.cached
    np.testing.assert_allclose(rebuilt.embed(TEXTS), again.embed(TEXTS), atol=1e-5)


# ---------------------------------------------------------------------------------------------- classifier
@pytest.mark.parametrize("score", ["max_softmax", "mahalanobis"])
def test_onnx_classifier_decides_like_torch(tmp_path, tokenizer, score):
    from convssl.downstream.intent_classifier import IntentClassifier

    folder = _classifier_folder(tmp_path, tokenizer, score)
    ref = IntentClassifier.load(folder)
    fp32 = onnx_classifier(IntentClassifier.load(folder), folder, OnnxOptions(quantize=False, cache_dir=str(tmp_path)))
    assert fp32 is not None and fp32.precision == "fp32"
    ref_logits, ref_scores = ref.logits_and_scores(TEXTS)
    logits, scores = fp32.logits_and_scores(TEXTS)
    np.testing.assert_allclose(logits, ref_logits, atol=2e-4)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-3, atol=2e-3)
    for a, b in zip(fp32.predict(TEXTS), ref.predict(TEXTS)):
        assert (a.intent, a.out_of_scope) == (b.intent, b.out_of_scope)
        assert [lab for lab, _ in a.top] == [lab for lab, _ in b.top]

    # The int8 check measures what it claims: its top-1 agreement is the share of probe texts on
    # which the int8 twin picks torch's intent (int8 forced here, whatever its agreement).
    forced = onnx_classifier(IntentClassifier.load(folder), folder,
                             OnnxOptions(quantize=True, cache_dir=str(tmp_path), min_agreement=0.0))
    assert forced.precision == "int8"
    probes = probe_texts((), ref.labels)  # the defaults and the label names as in-domain probes
    assert forced.report.probes == len(probes) >= len(DEFAULT_PROBES) + len(ref.labels) - 1
    same = np.mean([a.top[0][0] == b.top[0][0]
                    for a, b in zip(forced.predict(probes, batch_size=16), ref.predict(probes, batch_size=16))])
    check = forced.report.checks["int8"]
    assert check["top1_agreement"] == pytest.approx(same) and check["max_abs_prob_diff"] > 0.0
    # With the default bar the choice follows the measurement: int8 only when it agrees enough.
    chosen = onnx_classifier(IntentClassifier.load(folder), folder, OnnxOptions(quantize=True, cache_dir=str(tmp_path)))
    bar = OnnxOptions().min_agreement
    if min(check["top1_agreement"], check["scope_agreement"]) >= bar:
        assert chosen.precision == "int8"
    else:
        assert chosen.precision == "fp32" and f"int8 failed agreement >= {bar}" in chosen.report.reason


def test_onnx_serves_the_pooled_head_of_full_fine_tuning(tmp_path, tokenizer, encoder_folder):
    """`convssl finetune`'s default classifier (LP-FT: head on the normalised pooled embedding)."""
    import torch

    from convssl.downstream.intent_classifier import IntentClassifier, IntentMeta
    from convssl.models.encoder import Encoder

    labels = ["card_arrival", "change_pin", "lost_card"]
    torch.manual_seed(3)
    head = (torch.randn(len(labels), 64) * 5, torch.randn(len(labels)))
    encoder = Encoder.load(encoder_folder)
    folder = tmp_path / "pooled"
    IntentClassifier(encoder.model, tokenizer, IntentMeta(kind="pooled", labels=labels, max_length=32),
                     head=head).save(folder)
    ref = IntentClassifier.load(folder)
    fp32 = onnx_classifier(IntentClassifier.load(folder), folder, OnnxOptions(quantize=False, cache_dir=str(tmp_path)))
    np.testing.assert_allclose(fp32.logits_and_scores(TEXTS)[0], ref.logits_and_scores(TEXTS)[0], atol=2e-3)
    assert [p.intent for p in fp32.predict(TEXTS)] == [p.intent for p in ref.predict(TEXTS)]


# ---------------------------------------------------------------------------------------------- no onnxruntime
def test_without_onnxruntime_auto_serves_torch_and_onnx_says_how_to_install():
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from convssl.models.onnx import OnnxUnavailable, onnx_encoder, onnxruntime_available\n"
        "from convssl.serve.analysis import use_onnx\n"
        "assert not onnxruntime_available()\n"
        "assert use_onnx('auto') is False and use_onnx('torch') is False\n"
        "try:\n    use_onnx('onnx')\nexcept ValueError as exc:\n    print('REFUSED', exc)\n"
        "try:\n    onnx_encoder(None, '.')\nexcept OnnxUnavailable as exc:\n    print('UNAVAILABLE', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "REFUSED" in out.stdout and "pip install onnx onnxruntime" in out.stdout
    assert "UNAVAILABLE" in out.stdout
    assert "serving with PyTorch" in out.stderr  # the auto fallback is said, not silent
