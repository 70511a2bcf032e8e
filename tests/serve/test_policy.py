"""The reply policy: calibrated "not understood", clarifying questions, frustration, small talk."""

from __future__ import annotations

import numpy as np
import pytest

from convssl.serve.analysis import Analysis
from convssl.serve.answers import Templates
from convssl.serve.config import EscalationConfig
from convssl.serve.policy import Policy, SessionState

TEMPLATES = Templates({"transfer_timing": ["Transfers take 1-2 days."], "card_arrival": ["Cards take 3-5 days."],
                       "card_delivery_estimate": ["Delivery takes 3-5 working days."]}, {})


def analysis(top, out_of_scope=False, text="a question", **scores) -> Analysis:
    return Analysis(top[0][0], top[0][1], top, out_of_scope, scores.get("human", 0.0), "", -1.0,
                    frustration_score=scores.get("frustration", 0.0), text=text)


def policy(calibrated=True, threshold=0.27, **rules) -> Policy:
    return Policy(TEMPLATES, EscalationConfig(**rules), responder_threshold=0.6, fallback="Sorry?", seed=0,
                  calibrated=calibrated, calibrated_threshold=threshold if calibrated else None)


def test_not_understood_follows_the_classifiers_calibration_unless_the_config_sets_a_number():
    # 0.29 passed the classifier's own validation-calibrated threshold (0.27): answer it
    a = analysis([("transfer_timing", 0.29), ("card_arrival", 0.08)])
    assert policy().decide(a, SessionState()).source == "template"
    assert policy(confidence_threshold=0.5).decide(a, SessionState()).source == "fallback"
    # a classifier without calibration keeps the old fixed rule
    assert policy(calibrated=False).decide(a, SessionState()).source == "fallback"


def vector(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_turns_not_understood_escalate_when_the_user_is_stuck_not_when_they_ask_something_new():
    p = policy(low_confidence_turns=2, rephrase_threshold=0.5, max_unclear_turns=3)

    def unclear(text, embedding):
        a = analysis([("transfer_timing", 0.2), ("card_arrival", 0.02)], out_of_scope=True, text=text)
        a.embedding = embedding
        return a

    def run(*turns):
        state, decisions = SessionState(), []
        for turn in turns:
            decisions.append(p.decide(turn, state))
            state.after(decisions[-1])
        return decisions

    # asked again in other words (cosine 0.8) and still not understood: stuck, a person takes over
    first, again = run(unclear("can I get a mortgage?", vector(1, 0, 0)), unclear("a home loan?", vector(0.8, 0.6, 0)))
    assert (first.kind, first.streak, first.repeats) == ("fallback", 1, 1)
    assert again.escalate and again.reason == "low_confidence"
    # a follow-up on another point (cosine 0) is a new question: the fallback again, no escalation
    first, follow_up = run(unclear("will my card work in Japan?", vector(1, 0, 0)),
                           unclear("and a fee in yen?", vector(0, 1, 0)))
    assert (follow_up.kind, follow_up.streak, follow_up.repeats) == ("fallback", 2, 1)
    # ...but three turns in a row without being understood is stuck, whatever they ask
    *_, third = run(unclear("a", vector(1, 0, 0)), unclear("b", vector(0, 1, 0)), unclear("c", vector(0, 0, 1)))
    assert third.escalate and third.reason == "low_confidence"
    # an understood turn ends the run
    state = SessionState(low_conf_streak=1, repeats=1, unclear=vector(1, 0, 0))
    understood = p.decide(analysis([("transfer_timing", 0.9), ("card_arrival", 0.01)]), state)
    state.after(understood)
    assert (state.low_conf_streak, state.repeats, state.unclear) == (0, 0, None)
    # rephrase_threshold 0: every turn not understood counts as asking again (the old rule)
    old = policy(low_confidence_turns=2, rephrase_threshold=0.0)
    state = SessionState()
    state.after(old.decide(unclear("a", vector(1, 0, 0)), state))
    assert old.decide(unclear("b", vector(0, 1, 0)), state).escalate


def test_two_close_intents_get_a_clarifying_question_and_the_answer_picks_one():
    p = policy(clarify_margin=0.1)
    a = analysis([("card_arrival", 0.41), ("card_delivery_estimate", 0.37)])
    d = p.decide(a, SessionState())
    assert d.kind == "clarify" and d.options == ["card_arrival", "card_delivery_estimate"]
    assert "card arrival" in d.reply and "card delivery estimate" in d.reply and not d.escalate
    # not understood, but together the two pass the calibrated threshold: ask before falling back
    low = analysis([("card_arrival", 0.16), ("card_delivery_estimate", 0.13)], out_of_scope=True)
    assert p.decide(low, SessionState()).kind == "clarify"
    too_low = analysis([("card_arrival", 0.12), ("card_delivery_estimate", 0.10)], out_of_scope=True)
    assert p.decide(too_low, SessionState()).kind == "fallback"
    for text, intent in [("the second one", "card_delivery_estimate"), ("the estimate please", "card_delivery_estimate"),
                         ("arrival", "card_arrival")]:
        reply = analysis([("transfer_timing", 0.9), ("card_arrival", 0.01)], text=text)
        picked = p.decide(reply, SessionState(options=d.options))
        assert (picked.kind, picked.intent) == ("answer", intent), text
    assert policy(clarify_margin=0).decide(a, SessionState()).kind == "answer"


@pytest.mark.parametrize("understood", [False, True])
def test_frustration_with_the_bot_escalates(understood):
    top = [("card_arrival", 0.9), ("transfer_timing", 0.01)] if understood else [("card_arrival", 0.1),
                                                                                ("transfer_timing", 0.05)]
    d = policy().decide(analysis(top, out_of_scope=not understood, frustration=0.8), SessionState())
    assert d.escalate and d.reason == "frustrated"
    calm = policy().decide(analysis(top, out_of_scope=not understood, frustration=0.3), SessionState())
    assert not calm.escalate


def test_curated_small_talk_matches_its_topics_and_not_banking_questions(minilm_path):
    from convssl.models.encoder import Encoder
    from convssl.serve.config import SmallTalkConfig
    from convssl.serve.smalltalk import SmallTalk, load_smalltalk

    encoder = Encoder.load(minilm_path, max_length=48)
    talk = SmallTalk(load_smalltalk("convssl/serve/demo/smalltalk.yaml"), encoder)
    threshold = SmallTalkConfig(file="x").threshold
    texts = ["thank you so much!", "hey, good morning", "am I talking to a bot?",
             "hi, my card still hasn't arrived", "how do I top up by bank transfer?", "what is the weather like?"]
    matches = talk.match(encoder.embed(texts, normalize=True))
    topics = [topic if score >= threshold else "" for topic, score in matches]
    assert topics == ["thanks", "greeting", "bot_identity", "", "", ""], matches
    # a question about the bot that the person-request detector also half matches: the nearer wins
    p = Policy(TEMPLATES, EscalationConfig(), 0.6, "Sorry?", seed=0, calibrated=True, calibrated_threshold=0.27,
               smalltalk=talk, smalltalk_threshold=threshold)
    robot = analysis([("card_arrival", 0.1), ("transfer_timing", 0.05)], out_of_scope=True, human=0.6)
    robot.smalltalk_topic, robot.smalltalk_score = "bot_identity", 0.7
    d = p.decide(robot, SessionState())
    assert (d.kind, d.escalate) == ("smalltalk", False) and "virtual assistant" in d.reply
    robot.human_score = 0.8
    assert p.decide(robot, SessionState()).reason == "asked_for_human"


def test_clarifying_questions_name_intents_as_words():
    from convssl.serve.policy import intent_title

    assert intent_title("card_arrival") == "card arrival"
    assert intent_title("Refund_not_showing_up") == "refund not showing up"
    assert intent_title("reverted_card_payment?") == "reverted card payment"


def test_spelling_repair_fixes_typos_with_the_bots_own_words_first():
    from convssl.serve.spelling import SpellingRepair

    repair = SpellingRepair(["card_arrival", "terminate_account", "Close your account in the app."])
    assert repair.repair("my new crad hasnt arived yet") == "my new card hasn't arrived yet"
    assert repair.repair("pls delete my acount").endswith("delete my account")  # not "count"
    for text in ["how long does a transfer to Germany take?", "¿Cuánto tarda?"]:  # known, or not English letters
        assert repair.repair(text).split()[0] == text.split()[0]
    assert repair.repair("my PIN is blocked") == "my PIN is blocked"


def test_an_understood_intent_without_a_written_answer_says_so_and_offers_a_person():
    p = Policy(TEMPLATES, EscalationConfig(), responder_threshold=0.6, fallback="Sorry?", seed=0, calibrated=True,
               calibrated_threshold=0.27, no_answer="I understand this is about {intent}; ask for a person.")
    d = p.decide(analysis([("exchange_rate", 0.9), ("card_arrival", 0.01)]), SessionState())
    assert (d.kind, d.intent, d.understood) == ("fallback", "exchange_rate", True)
    assert d.reply == "I understand this is about exchange rate; ask for a person." and d.streak == 0
