"""`POST /v1/agent/messages/{id}/label` over HTTP: who may label what, and what the label becomes.

Through the running server's API only (not the app's internals), so the test holds whatever the
routes look like inside.
"""

from __future__ import annotations

import json

import httpx

from convssl.cli import main
from tests.serve.conftest import agent_headers, start_server


def test_agents_label_user_messages_and_the_labels_become_training_data(tmp_path, make_config):
    db_path = tmp_path / "label.sqlite3"
    with start_server(make_config(db_path)) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        turn = c.post("/v1/chat", json={"text": "I still have not received my new card"}).json()
        uid, bot_id, predicted = turn["user_message_id"], turn["message_id"], turn["intent"]
        url = f"/v1/agent/messages/{uid}/label"

        assert c.post(url, json={"label": "card_arrival"}).status_code == 401  # agents only
        bad_token = {"Authorization": "Bearer not-the-token"}
        assert c.post(url, json={"label": "card_arrival"}, headers=bad_token).status_code == 401
        # only what users wrote is labelled: not the bot's reply, not a message that does not exist
        assert c.post(f"/v1/agent/messages/{bot_id}/label", json={"label": "card_arrival"},
                      headers=agent_headers()).status_code == 404
        assert c.post("/v1/agent/messages/999999/label", json={"label": "card_arrival"},
                      headers=agent_headers()).status_code == 404
        assert c.post(url, json={}, headers=agent_headers()).status_code == 422  # no label given

        wrong = next(label for label in ("card_arrival", "lost_or_stolen_card") if label != predicted)
        ok = c.post(url, json={"label": wrong, "agent": "Sam"}, headers=agent_headers())
        assert ok.status_code == 200 and ok.json() == {"ok": True, "message_id": uid, "label": wrong, "agent": "Sam"}

    out = tmp_path / "feedback.jsonl"
    assert main(["feedback", "export", "--db", str(db_path), "--out", str(out), "--no-thumbs-up"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    # the agent overrode the classifier: the example carries the agent's label as a correction
    assert [(r["text"], r["label"], r["source"]) for r in rows] == [
        ("I still have not received my new card", wrong, "correction")]
