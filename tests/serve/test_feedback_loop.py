"""The feedback loop closed: agents label what the bot got wrong, export, retrain, now it is right."""

from __future__ import annotations

import json

import httpx

from convssl.cli import main
from convssl.data.readers import read_inputs
from convssl.downstream.intent_classifier import IntentClassifier
from tests.serve.conftest import INTENTS, agent_headers, banking_examples, start_server, train_classifier

# "Card swallowed" is not among the intents the bot was trained on: it cannot get these right.
SWALLOWED = ["the ATM ate my card, what do I do?", "the cash machine kept my card", "my card got stuck in the ATM"]


def test_agent_labels_exported_and_retrained_fix_the_classifier(tmp_path, make_config, shared_data, minilm_path,
                                                                  tiny_classifier):
    before = IntentClassifier.load(tiny_classifier).predict(SWALLOWED)
    assert all(p.intent != "card_swallowed" for p in before)
    db_path = tmp_path / "serve.sqlite3"
    with start_server(make_config(db_path)) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        h = agent_headers()
        for text in SWALLOWED:
            sid = c.post("/v1/chat", json={"text": text}).json()["session_id"]
            c.post("/v1/chat", json={"session_id": sid, "text": "please get me a human"})
            r = c.post(f"/v1/agent/sessions/{sid}/resolve", headers=h, json={
                "labels": {str(_first_user_message(c, sid)): "card_swallowed"}, "new_intent": True, "agent": "Kim"})
            assert r.status_code == 200, r.text
        liked = c.post("/v1/chat", json={"text": "How do I change my PIN?"}).json()
        assert liked["intent"] == "change_pin"
        # terminate_account has no written answer: the reply did not answer with the intent, so a
        # thumbs-up on it says nothing about the intent and must not become a label
        unanswered = c.post("/v1/chat", json={"text": "I'd like to close my account"}).json()
        assert unanswered["intent"] == "terminate_account"
        for turn in (liked, unanswered):
            c.post("/v1/feedback", json={"session_id": turn["session_id"], "message_id": turn["message_id"],
                                         "rating": "up"})
        http_export = c.get("/v1/agent/export", headers=h).text

    out = tmp_path / "feedback.jsonl"
    assert main(["feedback", "export", "--db", str(db_path), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == http_export
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["text"], r["label"]) for r in rows] == [(t, "card_swallowed") for t in SWALLOWED] + [
        ("How do I change my PIN?", "change_pin")]
    assert all(r["agent"] == "Kim" and r["labelled_at"].endswith("+00:00") for r in rows[:3])
    only_agents = tmp_path / "agents.jsonl"
    assert main(["feedback", "export", "--db", str(db_path), "--out", str(only_agents), "--no-thumbs-up"]) == 0
    assert len(only_agents.read_text(encoding="utf-8").splitlines()) == 3

    exported = read_inputs([out]).intents
    assert [(e.text, e.label) for e in exported] == [(r["text"], r["label"]) for r in rows]
    retrained = train_classifier(minilm_path, banking_examples(shared_data, INTENTS, 12) + exported,
                                 tmp_path / "retrained")
    after = IntentClassifier.load(retrained).predict(SWALLOWED)
    assert [p.intent for p in after] == ["card_swallowed"] * 3


def _first_user_message(client: httpx.Client, session_id: str) -> int:
    messages = client.get(f"/v1/sessions/{session_id}/messages").json()["messages"]
    return next(m["id"] for m in messages if m["role"] == "user")


def test_export_names_a_missing_database(tmp_path, capsys):
    assert main(["feedback", "export", "--db", str(tmp_path / "nope.sqlite3"), "--out", str(tmp_path / "x")]) == 2
    assert "nope.sqlite3 does not exist" in capsys.readouterr().err
