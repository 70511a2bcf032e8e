"""Agents as people: named accounts from the CLI, an audit trail, labels that cannot slip in by typo."""

from __future__ import annotations

import json

import httpx
import pytest

from convssl.cli import main
from tests.serve.conftest import start_server


def create_agent(db_path, name: str, capsys) -> str:
    assert main(["agents", "create", name, "--db", str(db_path)]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def served(tmp_path, make_config, capsys):
    db_path = tmp_path / "agents.sqlite3"
    tokens = {name: create_agent(db_path, name, capsys) for name in ("Dana", "Lee")}
    with start_server(make_config(db_path, agent_token="")) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        yield c, tokens, db_path


def escalated_session(c: httpx.Client) -> tuple[str, int]:
    first = c.post("/v1/chat", json={"text": "my card got stuck in the ATM"}).json()
    c.post("/v1/chat", json={"session_id": first["session_id"], "text": "please get me a human"})
    return first["session_id"], first["user_message_id"]


def test_named_accounts_act_under_their_own_name_and_every_action_is_audited(served, capsys):
    c, tokens, db_path = served
    dana, lee = bearer(tokens["Dana"]), bearer(tokens["Lee"])
    assert c.get("/v1/agent/me", headers=dana).json() == {"agent": "Dana", "account": True}
    sid, uid = escalated_session(c)
    # the body's name is ignored for an account: nobody can act as someone else
    assert c.post(f"/v1/agent/sessions/{sid}/take", json={"agent": "Lee"}, headers=dana).json()["agent"] == "Dana"
    assert c.post(f"/v1/agent/sessions/{sid}/reply", json={"text": "Dana here, let me look."}, headers=dana).is_success

    typo = c.post(f"/v1/agent/messages/{uid}/label", json={"label": "no_such_intent_xyz"}, headers=dana)
    assert typo.status_code == 422 and "'no_such_intent_xyz' is not an intent" in typo.json()["error"]
    near = c.post(f"/v1/agent/messages/{uid}/label", json={"label": "card_arival"}, headers=dana)
    assert near.status_code == 422 and "did you mean card_arrival" in near.json()["error"]
    assert c.post(f"/v1/agent/messages/{uid}/label", json={"label": "lost_or_stolen_card"}, headers=dana).is_success
    new = c.post(f"/v1/agent/messages/{uid}/label", json={"label": "card_swallowed", "new_intent": True}, headers=lee)
    assert new.is_success and new.json()["agent"] == "Lee"
    assert "card_swallowed" in c.get("/v1/agent/labels", headers=lee).json()["new_intents"]
    assert c.post(f"/v1/agent/sessions/{sid}/resolve", json={}, headers=lee).is_success

    detail = c.get(f"/v1/agent/sessions/{sid}", headers=dana).json()
    msg = next(m for m in detail["messages"] if m["id"] == uid)
    assert [(h["label"], h["agent"], h["new_intent"]) for h in msg["label_history"]] == [
        ("lost_or_stolen_card", "Dana", False), ("card_swallowed", "Lee", True)]
    assert msg["label"] == "card_swallowed"
    assert [(a["agent"], a["action"]) for a in detail["actions"]] == [
        ("Dana", "take"), ("Dana", "reply"), ("Dana", "label"), ("Lee", "label"), ("Lee", "resolve")]
    assert all(a["created_at"] > 0 for a in detail["actions"])

    out = db_path.parent / "export.jsonl"
    assert main(["feedback", "export", "--db", str(db_path), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["label"], r["agent"]) for r in rows] == [("card_swallowed", "Lee")]

    capsys.readouterr()
    assert main(["agents", "revoke", "Dana", "--db", str(db_path)]) == 0
    assert c.get("/v1/agent/queue", headers=dana).status_code == 401  # at once, while the server runs
    assert c.get("/v1/agent/queue", headers=lee).status_code == 200
    assert main(["agents", "list", "--db", str(db_path)]) == 0
    listing = capsys.readouterr().out
    assert "Dana" in listing and "revoked" in listing and tokens["Lee"] not in listing
    assert main(["agents", "revoke", "Dana", "--db", str(db_path)]) == 2
    assert "no active agent named 'Dana'" in capsys.readouterr().err


def test_tokens_are_stored_only_hashed(served):
    import sqlite3

    _, tokens, db_path = served
    with sqlite3.connect(db_path) as conn:
        dump = "\n".join(conn.iterdump())
    assert tokens["Dana"] not in dump and tokens["Lee"] not in dump


def test_a_thumbs_up_on_an_escalation_reply_is_not_a_label(served):
    c, tokens, _ = served
    turn = c.post("/v1/chat", json={"text": "I want to talk to a real person"}).json()
    assert turn["escalated"]
    c.post("/v1/feedback", json={"session_id": turn["session_id"], "message_id": turn["message_id"], "rating": "up"})
    answered = c.post("/v1/chat", json={"text": "How do I change my PIN?"}).json()
    c.post("/v1/feedback", json={"session_id": answered["session_id"], "message_id": answered["message_id"],
                                 "rating": "up"})
    export = c.get("/v1/agent/export", headers=bearer(tokens["Lee"])).text
    assert [json.loads(line)["text"] for line in export.splitlines()] == ["How do I change my PIN?"]


def test_without_accounts_or_token_the_agent_api_says_how_to_enable_it(tmp_path, make_config):
    with start_server(make_config(tmp_path / "none.sqlite3", agent_token="")) as srv:
        r = httpx.get(f"{srv.url}/v1/agent/queue", headers=bearer("anything"))
    assert r.status_code == 503 and "convssl agents create" in r.json()["error"]


def test_bad_account_names_are_refused(tmp_path, capsys):
    assert main(["agents", "create", "Robert'); DROP TABLE agents;--", "--db", str(tmp_path / "a.sqlite3")]) == 2
    assert "agent name" in capsys.readouterr().err
    create_agent(tmp_path / "a.sqlite3", "Sam", capsys)
    assert main(["agents", "create", "Sam", "--db", str(tmp_path / "a.sqlite3")]) == 2
    assert "already exists" in capsys.readouterr().err
