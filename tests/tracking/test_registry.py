"""Registered versions are plain Hugging Face folders: they load without convssl.

A tiny encoder and a tiny intent classifier, built here, are registered through the CLI; their
downloaded versions are opened in a fresh Python process where importing convssl fails.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from convssl.cli import main
from convssl.tracking.references import resolve_model_uri
from tests.evaluate import slices

tiny_bert = slices.tiny_bert  # a 2-layer, 32-wide random BERT with MiniLM's tokenizer (session fixture)

NO_CONVSSL = "import sys; sys.modules['convssl'] = None  # any import of convssl now fails\n"


def run_without_convssl(code: str, tmp_path) -> dict:
    proc = subprocess.run([sys.executable, "-c", NO_CONVSSL + code], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300, env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def tiny_classifier_folder(tiny_bert, tmp_path):
    """A 3-intent BERT classifier as `convssl finetune` lays it out (config, weights, tokenizer, OOS rule)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path / "intent"
    labels = ["card_arrival", "change_pin", "exchange_rate"]
    config = BertConfig.from_pretrained(tiny_bert, num_labels=3, id2label=dict(enumerate(labels)),
                                        label2id={v: i for i, v in enumerate(labels)})
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    (folder / "convssl_intent.json").write_text(json.dumps({"oos_label": "oos", "threshold": 0.5}))
    return folder


def test_registered_versions_load_without_convssl(tracking_on, tiny_bert, tiny_classifier_folder, tmp_path, capsys):
    assert main(["registry", "register", str(tiny_bert), "--name", "plain-encoder", "--alias", "champion"]) == 0
    assert main(["registry", "register", str(tiny_classifier_folder), "--name", "plain-intent"]) == 0
    capsys.readouterr()
    encoder = resolve_model_uri("models:/plain-encoder@champion")
    classifier = resolve_model_uri("models:/plain-intent/1")
    card = (encoder / "README.md").read_text()
    assert "## Intended use" in card and "## Limitations" in card and "## Lineage" in card

    # One fresh process for both (importing torch and transformers twice would double the cost).
    got = run_without_convssl(f"""
import json
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
from sentence_transformers import SentenceTransformer
tok = AutoTokenizer.from_pretrained({str(encoder)!r})
model = AutoModel.from_pretrained({str(encoder)!r})
hidden = model(**tok(["my card has not arrived"], return_tensors="pt")).last_hidden_state
vectors = SentenceTransformer({str(encoder)!r}, device="cpu").encode(["my card has not arrived", "exchange rate?"])
tok = AutoTokenizer.from_pretrained({str(classifier)!r})
AutoModel.from_pretrained({str(classifier)!r})
clf = AutoModelForSequenceClassification.from_pretrained({str(classifier)!r})
logits = clf(**tok(["I want to change my PIN"], return_tensors="pt")).logits
print(json.dumps({{"hidden": hidden.shape[-1], "st": list(vectors.shape), "vocab": len(tok),
                  "labels": [clf.config.id2label[i] for i in range(3)], "logits": list(logits.shape)}}))
""", tmp_path)
    assert got["hidden"] == 32 and got["st"] == [2, 32] and got["vocab"] > 30000
    assert got["labels"] == ["card_arrival", "change_pin", "exchange_rate"] and got["logits"] == [1, 3]


def test_registry_errors_are_one_clear_line(tracking_on, tmp_path, capsys):
    assert main(["registry", "register", str(tmp_path), "--name", "x"]) == 2
    assert "not a model folder" in capsys.readouterr().err
    assert main(["finetune", "--model", "models:/no-such-model@champion", "--data", str(tmp_path), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "models:/no-such-model@champion" in err and len(err.strip().splitlines()) == 1


def test_a_registered_response_encoder_keeps_its_prompts_for_sentence_transformers(tracking_on, tiny_bert, tmp_path,
                                                                                    capsys):
    """A response encoder trained with prompts, once registered, opens in sentence-transformers with
    them: `encode_query` / `encode_document` give what convssl's evaluation and response bank embed."""
    import shutil

    import numpy as np
    from sentence_transformers import SentenceTransformer

    from convssl.models.encoder import Encoder
    from convssl.models.pretext_model import write_prompts

    folder = tmp_path / "response-encoder"
    shutil.copytree(tiny_bert, folder)
    write_prompts(folder, {"query": "context: ", "document": "reply: "})
    assert main(["registry", "register", str(folder), "--name", "prompted-encoder"]) == 0
    capsys.readouterr()
    registered = resolve_model_uri("models:/prompted-encoder/1")
    model = SentenceTransformer(str(registered), device="cpu", local_files_only=True)
    assert model.prompts == {"query": "context: ", "document": "reply: "}
    ours = Encoder.load(registered)
    texts = ["i need a bus to fresno", "what time does it leave?"]
    np.testing.assert_allclose(model.encode_query(texts, normalize_embeddings=True),
                               ours.embed(ours.prompted(texts, "query"), normalize=True), atol=1e-5)
    np.testing.assert_allclose(model.encode_document(texts, normalize_embeddings=True),
                               ours.embed(ours.prompted(texts, "document"), normalize=True), atol=1e-5)
