"""A user and an agent in headless Chromium: chat, escalate, agent answers, user sees it, rates it."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

import pytest

from convssl.cli import main
from tests.conftest import chromium_path, need, need_module
from tests.serve.conftest import start_server

# Screenshots go to a temporary folder; CONVSSL_SCREENSHOTS=docs/screenshots refreshes the docs' pictures.
SCREENSHOTS = Path(os.environ.get("CONVSSL_SCREENSHOTS") or tempfile.mkdtemp(prefix="convssl-screenshots-"))

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    chromium = chromium_path()
    need("chromium", chromium is not None, "chromium is missing (make browser, or apt-get install chromium)")
    sync_api = need_module("playwright", "playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium,
                              args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


def test_user_escalates_agent_answers_user_rates(browser, tmp_path, make_config, capsys):
    db_path = tmp_path / "browser.sqlite3"
    assert main(["agents", "create", "Dana", "--db", str(db_path)]) == 0
    dana_token = capsys.readouterr().out.strip().splitlines()[-1]
    with start_server(make_config(db_path, agent_token="")) as srv:
        user = browser.new_page(viewport={"width": 900, "height": 760})
        user.goto(srv.url + "/")
        box = user.get_by_label("Your message")
        box.fill("When will my card arrive?")
        box.press("Enter")
        user.locator(".msg-bot").first.wait_for()
        assert "3 working days" in user.locator(".msg-bot .text").first.inner_text()
        user.locator(".msg-bot").first.get_by_role("button", name="Helpful", exact=True).click()
        user.wait_for_selector(".rate[data-rated='up']")

        hostile = "<script>window.pwned=1</script><b>bold</b>"
        box.fill(hostile)
        box.press("Enter")
        user.locator(".msg-bot").nth(1).wait_for()
        assert user.locator(".msg-user .text").nth(1).inner_text() == hostile
        assert user.evaluate("window.pwned") is None and user.locator(".log b").count() == 0

        box.fill("I want to talk to a real person")
        box.press("Enter")
        user.wait_for_selector("body[data-status='queued']", state="attached")

        agent = browser.new_page(viewport={"width": 1100, "height": 760})
        agent.goto(srv.url + "/agent")
        agent.get_by_label("Agent token").fill(dana_token)  # a named account: no name to type
        agent.get_by_role("button", name="Sign in").click()
        agent.wait_for_selector("#whoami:has-text('Signed in as Dana.')")
        agent.locator(".queue-open").first.click()
        agent.get_by_role("button", name="Take conversation").click()
        agent.wait_for_selector(".guess")
        assert agent.locator(".guess").count() == 3
        assert agent.locator("#thread .msg-user .text").nth(1).inner_text() == hostile
        agent.get_by_label("Reply to the user").fill("Hi, this is Dana. How can I help?")
        agent.get_by_role("button", name="Send reply").click()

        user.locator(".msg-agent").wait_for(timeout=3000)
        assert "Dana" in user.locator(".msg-agent .text").inner_text()
        assert user.locator(".msg-agent .who").inner_text().lower() == "agent"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        user.screenshot(path=str(SCREENSHOTS / "chat.png"))
        agent.wait_for_selector("#thread .msg-agent")
        agent.screenshot(path=str(SCREENSHOTS / "console.png"))

        suggestions = agent.eval_on_selector_all("#intent-labels option", "os => os.map(o => o.value)")
        assert "card_arrival" in suggestions and "lost_or_stolen_card" in suggestions
        intent = agent.get_by_label("Right intent for the user's request")
        intent.fill("card_arival")  # a typo: must not become a new class
        assert "not an intent of the classifier" in agent.locator("#label-note").inner_text()
        agent.get_by_role("button", name="Mark resolved").click()
        agent.wait_for_selector("#console-error:not([hidden])")
        assert "Add as a new intent" in agent.locator("#console-error").inner_text()
        intent.fill("card_arrival")
        assert agent.locator("#new-intent-row").is_hidden()
        intent.fill("card_swallowed")
        agent.get_by_label("Add as a new intent").check()
        agent.get_by_role("button", name="Mark resolved").click()
        agent.wait_for_selector("#queue-empty:not([hidden])")

    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT rating FROM feedback").fetchall() == [(1,)]
        roles = [r[0] for r in conn.execute("SELECT role FROM messages ORDER BY id")]
        assert roles == ["user", "bot", "user", "bot", "user", "bot", "agent"]
        assert conn.execute("SELECT status, agent FROM sessions").fetchall() == [("resolved", "Dana")]
        assert conn.execute("SELECT label, agent, new_intent FROM labels").fetchall() == [("card_swallowed", "Dana", 1)]
        actions = conn.execute("SELECT agent, action FROM agent_actions ORDER BY id").fetchall()
        assert actions == [("Dana", "take"), ("Dana", "reply"), ("Dana", "label"), ("Dana", "resolve")]
        stored = conn.execute("SELECT text FROM messages WHERE role='user' ORDER BY id").fetchall()
        assert stored[1] == (hostile,)
