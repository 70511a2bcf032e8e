"""Answer files: the shipped demo covers every BANKING77 intent; bad files fail naming the problem."""

from __future__ import annotations

import json

import pytest

from convssl.config import load_config
from convssl.serve.answers import ResponsesError, load_templates
from convssl.serve.config import ServeConfig
from convssl.serve.response_bank import load_bank_file


def test_demo_answers_cover_all_77_banking_intents(shared_data):
    intents = json.loads((shared_data / "banking77" / "categories.json").read_text(encoding="utf-8"))
    config = load_config(ServeConfig, "serve_demo")
    templates = load_templates(config.responses_file)
    assert sorted(templates.answers) == sorted(intents) and len(intents) == 77
    for intent in intents:
        text = templates.render(intent)
        assert text and "{" not in text and len(text) < 300


def test_slots_come_from_the_request_then_the_defaults(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("defaults: {name: there}\nintents:\n  greet: 'Hi {name}, welcome to {place}.'\n", encoding="utf-8")
    t = load_templates(path)
    assert t.render("greet", {"name": "Ann", "place": "the shop"}) == "Hi Ann, welcome to the shop."
    assert t.render("greet") == "Hi there, welcome to."
    assert t.render("unknown") is None


@pytest.mark.parametrize("text, words", [
    ("intents:\n  greet: []\n", "'greet' needs a non-empty answer"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("intents: {a: x}\nextra: 1\n", "unknown top-level key"),
    ("a: [unclosed\n", "not valid YAML"),
])
def test_bad_responses_files_name_the_problem(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ResponsesError, match="bad.yaml") as err:
        load_templates(path)
    assert words in str(err.value)


def test_bank_file_errors_name_the_line(tmp_path):
    path = tmp_path / "bank.jsonl"
    path.write_text('{"response": "hello!", "context": "hi"}\n{"reply": "x"}\n', encoding="utf-8")
    with pytest.raises(ResponsesError, match=r"bank.jsonl:2: .*'response'"):
        load_bank_file(path)
    text = tmp_path / "bank.txt"
    text.write_text("Nice to meet you!\n\nSee you soon.\n", encoding="utf-8")
    assert [e.response for e in load_bank_file(text)] == ["Nice to meet you!", "See you soon."]
