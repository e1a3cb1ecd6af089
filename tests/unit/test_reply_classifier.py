"""The offline classifier (learned model + rules), measured on the blind set it never saw.

tests/data/replies_blind.jsonl was written and committed before the model was trained and is never
used to train or tune it (see tests/data/README.md). The gates below sit just under the values
measured on it; the full report (per-category precision/recall, confusion matrix) is printed.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from flywheel.domain.labels import CATEGORIES
from flywheel.domain.reply_model import ReplyModel, features, packaged_model
from flywheel.domain.reply_rules import (
    MODEL_UNSUBSCRIBE_THRESHOLD,
    classify_offline,
    contact_request,
    decide,
    referral_contact,
    return_date,
    without_disclaimers,
)
from flywheel.local.train_classifier import evaluate

DATA = Path(__file__).resolve().parents[1] / "data"
TODAY = date(2026, 11, 27)
TRAIN = [json.loads(line) for line in (DATA / "replies_labelled.jsonl").read_text().splitlines() if line.strip()]
BLIND = [json.loads(line) for line in (DATA / "replies_blind.jsonl").read_text().splitlines() if line.strip()]
# a second blind set, written by an outside review of #12 before it looked at the corpus or the model
# (214 replies; the 27 that turned out to repeat or nearly repeat a corpus reply, such as "Pass." and
# "Sono fuori ufficio fino al 5 maggio.", were taken out by the test below's rule, whatever the
# classifier made of them)
REVIEW_BLIND = [
    json.loads(line) for line in (DATA / "replies_blind_review12.jsonl").read_text().splitlines() if line.strip()
]

# requests to be contacted and politely worded opt-outs in the 13 languages, written before the rules
# and the model were changed for them (HELD_OUT_B also before it was looked at; see tests/data/README)
HELD_OUT = [
    json.loads(line)
    for name in ("replies_heldout_contact_optout.jsonl", "replies_heldout_contact_optout_b.jsonl")
    for line in (DATA / name).read_text().splitlines()
    if line.strip()
]
# set C: polite, indirect and angry opt-outs and requests to be contacted with a negation nearby,
# written and committed before the fix for the opt-outs 1d80301 stopped catching
HELD_OUT_C = [
    json.loads(line) for line in (DATA / "replies_heldout_optout_c.jsonl").read_text().splitlines() if line.strip()
]

# measured on the blind set (README "Reply classification"): accuracy 0.927 (306/330), unsubscribe
# recall 0.980 (49/50), return dates 24/24, objection types 20/25. The gates sit just under.
BLIND_ACCURACY_GATE = 0.92
UNSUBSCRIBE_RECALL_GATE = 0.98
# the review's set: accuracy 0.963 (180/187), unsubscribe recall 1.000 (26/26) and precision 1.000
# (at 1d80301, with the model alone suppressing only from 0.7: 0.952, recall 24/26)
REVIEW_ACCURACY_GATE = 0.96
REVIEW_UNSUBSCRIBE_RECALL_GATE = 1.0
# the held-out sets A and B: contact requests 86/95 (none suppressed; at 59f1de8: 23/95, 49 suppressed),
# opt-outs 46/46
HELD_OUT_CONTACT_ACCURACY_GATE = 0.9
# set C: opt-outs 70/70 (at 1d80301: 31/70; at 59f1de8: 51/70), contact requests 39/48 exact and none
# suppressed (at 59f1de8: 19 suppressed)
HELD_OUT_C_CONTACT_ACCURACY_GATE = 0.8


def report_lines(report: dict) -> list[str]:
    lines = [
        f"accuracy {report['accuracy']:.3f} on {report['count']} replies",
        f"{'category':16s} precision recall support",
    ]
    lines += [
        f"{c:16s} {v['precision']:9.3f} {v['recall']:6.3f} {v['support']:7d}" for c, v in report["per_category"].items()
    ]
    short = [c[:6] for c in report["labels"]]
    lines.append("confusion (rows: truth, columns: predicted)")
    lines.append(" " * 16 + " ".join(f"{s:>6s}" for s in short))
    lines += [
        f"{c:16s}" + " ".join(f"{n:6d}" for n in row)
        for c, row in zip(report["labels"], report["confusion_matrix"], strict=True)
    ]
    return lines


@pytest.fixture(scope="module")
def blind_predictions() -> list:
    return [classify_offline(r["text"], TODAY) for r in BLIND]


def test_corpus_and_blind_set_sizes_and_coverage() -> None:
    for rows, minimum, per_category in ((TRAIN, 1500, 100), (BLIND, 300, 25)):
        counts = Counter(r["category"] for r in rows)
        assert len(rows) >= minimum and set(counts) == set(CATEGORIES) and min(counts.values()) >= per_category


def test_blind_set_is_no_copy_or_paraphrase_of_training() -> None:
    """No blind reply repeats a training reply, and none of 30+ characters is a near-paraphrase of one
    (character n-gram cosine >= 0.75); within the corpus, no two longer replies are templated copies."""
    train_texts = {r["text"].strip().lower() for r in TRAIN}
    assert not [
        r["text"] for r in BLIND + REVIEW_BLIND + HELD_OUT + HELD_OUT_C if r["text"].strip().lower() in train_texts
    ]

    def vectors(rows: list[dict]) -> tuple[list[str], np.ndarray]:
        texts = [r["text"] for r in rows if len(r["text"]) >= 30]
        grams = [{k: v for k, v in features(t).items() if k.startswith("c:")} for t in texts]
        vocab = {g: i for i, g in enumerate(sorted({g for doc in grams for g in doc}))}
        matrix = np.zeros((len(texts), len(vocab)), dtype=np.float32)
        for row, doc in enumerate(grams):
            for g, n in doc.items():
                matrix[row, vocab[g]] = 1 + np.log(n)
        matrix *= np.log((1 + len(texts)) / (1 + (matrix > 0).sum(axis=0))) + 1  # tf-idf: shared n-grams count less
        return texts, matrix / np.linalg.norm(matrix, axis=1, keepdims=True)

    for held in (BLIND + REVIEW_BLIND, HELD_OUT + HELD_OUT_C):  # each measured against the corpus on its own
        texts, both = vectors(held + TRAIN)
        blind_count = sum(1 for r in held if len(r["text"]) >= 30)
        cross = both[:blind_count] @ both[blind_count:].T
        worst = np.unravel_index(cross.argmax(), cross.shape)
        assert cross.max() < 0.75, (texts[worst[0]], texts[blind_count + worst[1]])
    within = both[blind_count:] @ both[blind_count:].T
    np.fill_diagonal(within, 0)
    worst = np.unravel_index(within.argmax(), within.shape)
    assert within.max() < 0.8, (texts[blind_count + worst[0]], texts[blind_count + worst[1]])


def test_blind_set_accuracy_and_unsubscribe_recall(blind_predictions: list, capsys: pytest.CaptureFixture[str]) -> None:
    report = evaluate([r["category"] for r in BLIND], [p.category for p in blind_predictions])
    misses = [
        f"  {r['category']} -> {p.category}: {r['text'][:70]!r}"
        for r, p in zip(BLIND, blind_predictions, strict=True)
        if p.category != r["category"]
    ]
    with capsys.disabled():
        print("\noffline classifier on the blind set (tests/data/replies_blind.jsonl)")
        print("\n".join(report_lines(report)))
    assert report["accuracy"] >= BLIND_ACCURACY_GATE, "\n".join(misses)
    assert report["per_category"]["unsubscribe"]["recall"] >= UNSUBSCRIBE_RECALL_GATE, "\n".join(misses)


def test_the_review_blind_set(capsys: pytest.CaptureFixture[str]) -> None:
    """Unseen phrasing in ten languages; a false `unsubscribe` suppresses a lead for good, so its
    precision is gated too (before the corpus grew: 0.888, unsubscribe precision 26/30)."""
    predictions: list[str] = [classify_offline(r["text"], TODAY).category for r in REVIEW_BLIND]
    report = evaluate([r["category"] for r in REVIEW_BLIND], predictions)
    with capsys.disabled():
        print("\noffline classifier on the review's blind set (tests/data/replies_blind_review12.jsonl)")
        print("\n".join(report_lines(report)))
    misses = [
        f"{r['category']} -> {p}: {r['text'][:70]!r}"
        for r, p in zip(REVIEW_BLIND, predictions, strict=True)
        if p != r["category"]
    ]
    assert report["accuracy"] >= REVIEW_ACCURACY_GATE, misses
    assert report["per_category"]["unsubscribe"]["recall"] >= REVIEW_UNSUBSCRIBE_RECALL_GATE, misses
    assert report["per_category"]["unsubscribe"]["precision"] == 1.0, misses


def test_held_out_contact_requests_are_never_suppressed_and_polite_opt_outs_are() -> None:
    """Suppressing a lead who asked to be called is the costliest mistake: not one of the held-out
    requests to be contacted may be `unsubscribe` (before: 49 of 95 were), and every politely worded
    opt-out still is (before: 40 of 46)."""
    predicted = [(r, classify_offline(r["text"], TODAY)) for r in HELD_OUT]
    contact = [(r, p) for r, p in predicted if r["category"] in ("interested", "meeting_request")]
    opt_outs = [(r, p) for r, p in predicted if r["category"] == "unsubscribe"]
    assert len(contact) >= 90 and len(opt_outs) >= 45
    assert not [r["text"] for r, p in contact if p.category == "unsubscribe"]
    right = sum(p.category == r["category"] for r, p in contact)
    assert right / len(contact) >= HELD_OUT_CONTACT_ACCURACY_GATE, [
        (r["text"], p.category) for r, p in contact if p.category != r["category"]
    ]
    assert not [(r["text"], p.category) for r, p in opt_outs if p.category != "unsubscribe"]


@pytest.mark.parametrize(
    "text",
    [
        "Please call me.",
        "Sí, por favor llámame.",
        "Bitte rufen Sie mich an.",
        "Merci, appelez-moi demain.",
        "Merci, envoyez-moi les tarifs.",
        "Graag, stuur de prijzen.",
        "Sim, por favor me ligue.",
        "Per favore, mandatemi il listino.",
        "Bitte senden Sie mir die Preise.",
    ],
)
def test_a_request_to_be_contacted_is_not_an_opt_out(text: str) -> None:
    """The review's cases: each was `unsubscribe` (the model alone, at 0.23-0.79)."""
    assert classify_offline(text, TODAY).category in ("interested", "meeting_request")


def test_the_model_alone_cannot_suppress_a_contact_request_or_on_a_weak_probability() -> None:
    """The decision rule itself, whatever the weights: a request to be contacted with no opt-out
    expression is never `unsubscribe`, even with the model certain; without one any other reply is
    `unsubscribe` from MODEL_UNSUBSCRIBE_THRESHOLD, even when another category scores higher; an
    explicit expression wins over a contact request."""
    sure = dict.fromkeys(CATEGORIES, 0.005) | {"unsubscribe": 0.945}
    for text in ("Please call me tomorrow.", "Bitte schicken Sie mir die Preisliste.", "请给我打电话。"):
        assert decide(text, sure)[0] == ("interested" if "schicken" in text else "meeting_request"), text
    weak = dict.fromkeys(CATEGORIES, 0.04) | {"unsubscribe": 0.3, "other": 0.26}
    assert decide("Thanks, noted.", weak)[0] == "other"
    assert decide("Thanks, noted.", sure) == ("unsubscribe", 0.945, "reads like an opt-out request (model)")
    # polite and indirect opt-outs the rules do not know score 0.34-0.68: not the top category is enough
    second = dict.fromkeys(CATEGORIES, 0.02) | {"unsubscribe": 0.41, "not_interested": 0.45}
    assert decide("Thanks, noted.", second)[0] == "unsubscribe"
    assert decide("Please call me tomorrow.", second | {"meeting_request": 0.3})[0] != "unsubscribe"
    assert 0.3 <= MODEL_UNSUBSCRIBE_THRESHOLD <= 0.5
    unsure = dict.fromkeys(CATEGORIES, 0.005) | {"interested": 0.945}
    for text in (
        "Please remove me, and don't call me either.",
        "Bitte nicht mehr kontaktieren.",
        "Please call me - no, remove me.",
        "Call me and I'll tell you again: take me off your list.",
        "Send me nothing. Unsubscribe.",
    ):
        assert decide(text, unsure)[0] == "unsubscribe", text
    assert contact_request("Please don't call me.") is None and contact_request("Rufen Sie mich nicht an.") is None


@pytest.mark.parametrize(
    "text",
    [
        "Please don't ever call me again, thanks.",
        "Stop. Ring me one more time and I will report you.",
        "Ne m'appelez plus jamais, merci.",
        "Bitte rufen Sie mich nie wieder an.",
        "Veuillez arrêter de m'envoyer vos offres.",
        "Stop sending me brochures.",
        "Прекратите мне звонить.",
        "Bel me niet meer, alstublieft.",
    ],
)
def test_a_negation_or_cessation_anywhere_in_the_clause_cancels_a_contact_request(text: str) -> None:
    """Not only in a 20-character window before it: "cesser de m'envoyer", "call me again and I'll
    report you" (the review of 1d80301) were read as requests to be contacted."""
    assert contact_request(text) is None


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("Don't email, just call me.", "meeting_request"),
        ("No need to write back; please give me a ring tomorrow.", "meeting_request"),
        ("Not the brochure again, but send me the contract.", "interested"),
        ("Stop emailing me and call me instead, it's quicker.", "meeting_request"),
        ("Keine E-Mails mehr bitte, rufen Sie mich lieber an.", "meeting_request"),
        ("Niet mailen, bel me liever.", "meeting_request"),
    ],
)
def test_a_negation_in_another_clause_leaves_the_request_and_email_only_refusals_change_channel(
    text: str, category: str
) -> None:
    """A negation that governs something else does not cancel the request; an opt-out that refuses
    only e-mail beside a request to be called is a change of channel, never a suppression."""
    assert contact_request(text) == category
    assert classify_offline(text, TODAY).category == category


# The outside review of 1d80301: each was `unsubscribe` at 59f1de8 and something else at 1d80301
# (a regression test, not a measure: the rules were written knowing them)
REVIEWED_OPT_OUTS = [
    "Please don't reach out to me again.",
    "Kindly refrain from contacting me further.",
    "Please cease all communication with me.",
    "Stop. Call me again and I'll report you.",
    "Veuillez cesser de m'envoyer des messages.",
    "I never agreed to the use of my email address, this is unauthorized, so take me off your list. Thanks.",
    "Hi. Under GDPR I want my personal data erased: delete it immediately. Regards.",
    "Bitte sehen Sie von weiteren Kontaktaufnahmen ab.",
    "Non desidero ricevere altre email.",
    "Gelieve mij niet meer te contacteren.",
    "Jeg ønsker ikke at modtage flere e-mails.",
]


@pytest.mark.parametrize(
    "text",
    [
        "Stop emailing me and call me instead, it's quicker.",
        "Keine E-Mails mehr bitte, rufen Sie mich lieber an.",
        # the last review's case: Portuguese's singular imperative was no opt-out, so nothing was suppressed
        "Por favor, não me mande mais e-mails, me ligue.",
    ],
)
def test_an_email_only_refusal_beside_a_call_request_is_a_meeting_request_that_suppresses_email(text: str) -> None:
    classified = classify_offline(text, TODAY)
    assert (classified.category, classified.email_opt_out) == ("meeting_request", True)


@pytest.mark.parametrize("text", ["Please don't call me, email me instead.", "Please no more calls, email only."])
def test_a_refusal_of_calls_that_asks_for_email_suppresses_nothing(text: str) -> None:
    """(The last review's case.) The model read these as opt-outs (0.68-0.78) and the lead, who asked
    to be e-mailed, was suppressed: asking for e-mail is a request to be contacted."""
    classified = classify_offline(text, TODAY)
    assert classified.category == "interested" and not classified.email_opt_out


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("Don't remove me from the list, call me", "meeting_request"),
        ("I was about to unsubscribe but this looks interesting, call me", "meeting_request"),
        ("No need to take me off your list - send me pricing", "interested"),
        ("Please don't stop emailing me, send me the case study", "interested"),
    ],
)
def test_an_opt_out_the_reply_itself_refuses_is_none(text: str, category: str) -> None:
    """(A leftover of the last session.) "Don't remove me from the list, call me" was `unsubscribe`
    and the lead, who asked to be called, was suppressed."""
    classified = classify_offline(text, TODAY)
    assert (classified.category, classified.email_opt_out) == (category, False)


@pytest.mark.parametrize(
    "text",
    [
        "Why don't you remove me from your list",
        "Don't forget to remove me from your list",
        "Don't unsubscribe me. Actually yes, unsubscribe me.",
        "I don't want these, unsubscribe me",
        # the re-review of 955c5ce: a regretful opt-out is an opt-out; words that put it off count
        # only beside a request to be contacted
        "Hate to unsubscribe but we've gone with another vendor",
        "Hate to opt out, but I'm not interested",
        "Hate to unsubscribe but wrong person, I left the company",
        "I'm about to unsubscribe, we already use a competitor",
        "I am going to unsubscribe from these emails.",
    ],
)
def test_only_words_that_refuse_the_opt_out_itself_cancel_it(text: str) -> None:
    assert classify_offline(text, TODAY).category == "unsubscribe"


def test_a_french_refusal_of_email_beside_a_call_request_changes_channel() -> None:
    """(A leftover of the last session.) "Arrêtez de m'envoyer des e-mails, appelez-moi" was a full
    unsubscribe: the opt-out matched without its verb, so it did not read as refusing e-mail only."""
    classified = classify_offline("Arrêtez de m'envoyer des e-mails, appelez-moi.", TODAY)
    assert (classified.category, classified.email_opt_out) == ("meeting_request", True)
    assert classify_offline("Arrêtez de m'appeler.", TODAY).category == "unsubscribe"


@pytest.mark.parametrize("text", ["Não me envie mais mensagens.", "Por favor não me contate mais."])
def test_portuguese_singular_opt_outs_are_unsubscribe(text: str) -> None:
    assert classify_offline(text, TODAY).category == "unsubscribe"


@pytest.mark.parametrize("text", REVIEWED_OPT_OUTS)
def test_the_reviewed_opt_outs_are_unsubscribe(text: str) -> None:
    classified = classify_offline(text, date(2025, 3, 3))
    assert classified.category == "unsubscribe", (classified.category, classified.reason)


def test_held_out_set_c() -> None:
    """Set C (written before this fix): every opt-out is `unsubscribe` and no request to be contacted is."""
    predicted = [(r, classify_offline(r["text"], TODAY).category) for r in HELD_OUT_C]
    contact = [(r, p) for r, p in predicted if r["category"] in ("interested", "meeting_request")]
    opt_outs = [(r, p) for r, p in predicted if r["category"] == "unsubscribe"]
    assert len(opt_outs) >= 60 and len(contact) >= 40
    assert not [(r["text"], p) for r, p in opt_outs if p != "unsubscribe"]
    assert not [r["text"] for r, p in contact if p == "unsubscribe"]
    right = sum(p == r["category"] for r, p in contact)
    assert right / len(contact) >= HELD_OUT_C_CONTACT_ACCURACY_GATE, [
        (r["text"], p) for r, p in contact if p != r["category"]
    ]


def test_a_legal_disclaimer_does_not_make_a_reply_automatic() -> None:
    """The review's case: a person's reply above a disclaimer was `auto_reply`; the decision leaves
    boilerplate out whether or not the text was cut before."""
    text = (
        "Not right now, maybe next quarter.\n\nDana Reyes\nCFO | Northwind\n\n"
        "This message is intended only for the addressee. If you have received this email in error, please notify "
        "the sender and delete it from your system. You must not copy, forward or disclose its contents.\n"
    )
    assert classify_offline(text, TODAY).category == "not_now"
    assert without_disclaimers(text).startswith("Not right now") and "notify" not in without_disclaimers(text)
    assert without_disclaimers("Please do not reply to this address.") == "Please do not reply to this address."
    only = "If you have received this email in error, please notify the sender."
    assert without_disclaimers(only) == only  # nothing else would remain


@pytest.mark.parametrize(
    "text",
    [
        "I never agreed to the use of my email address, this is unauthorized, so take me off your list. Thanks.",
        "Hi. Under GDPR I want my personal data erased: delete it immediately. Regards.",
        "Thanks for the note.\nPlease delete it immediately and any copies you hold of my details.",
        "We spoke last year. Any use of my data since then is unauthorized.",
    ],
)
def test_a_leads_own_sentence_is_never_dropped_as_a_disclaimer(text: str) -> None:
    """Only a closing block of boilerplate with two different cues goes: a lone sentence of the
    lead's that reads like one ("use ... unauthorized", "delete it ... immediately") stays."""
    assert without_disclaimers(text) == text


def test_return_dates_and_referrals_on_the_blind_set(blind_predictions: list) -> None:
    dated = [
        (r, p)
        for r, p in zip(BLIND, blind_predictions, strict=True)
        if "return_date" in r and p.category == "out_of_office"
    ]
    right = sum(p.return_date == date.fromisoformat(r["return_date"]) for r, p in dated)
    assert len(dated) >= 20 and right / len(dated) >= 0.95, [(r["text"], p.return_date) for r, p in dated]


def test_objection_types_follow_the_reason(blind_predictions: list) -> None:
    objections = [
        (r, p) for r, p in zip(BLIND, blind_predictions, strict=True) if r["category"] == p.category == "objection"
    ]
    right = sum(p.objection_type == r["objection_type"] for r, p in objections)
    assert len(objections) >= 20 and right / len(objections) >= 0.76
    assert classify_offline("Not now, maybe next year", TODAY).objection_type == "timing"


def test_fields_follow_the_category() -> None:
    for text in ("Please remove me from your list.", "No thanks.", "Let's talk Tuesday at 2pm, send an invite."):
        result = classify_offline(text, TODAY)
        if result.category in ("unsubscribe", "not_interested"):
            assert result.sentiment_score < 0 and result.interest_level == "none"
        if result.category in ("meeting_request", "interested"):
            assert result.sentiment_score > 0 and result.interest_level == "high"
    ooo = classify_offline("I'm out of the office until 7 December with no access to email.", TODAY)
    assert ooo.category == "out_of_office" and ooo.return_date == date(2026, 12, 7)
    referral = classify_offline("I'm not the right person - talk to Priya Shah, she runs procurement.", TODAY)
    assert referral.category == "referral" and referral.referral_contact == "Priya Shah"


def test_deterministic_bounded_and_names_its_model() -> None:
    a = classify_offline("Sounds great, send me a calendar invite for next week.", TODAY)
    assert a == classify_offline("Sounds great, send me a calendar invite for next week.", TODAY)
    assert a.source == "fallback" and -1 <= a.sentiment_score <= 1 and 0 <= a.confidence <= 1
    assert a.model.endswith(packaged_model().version)


def test_unsubscribe_rules_in_every_language_we_read() -> None:
    for text in (
        "Unsubcribe me",
        "Bitte aus dem Verteiler nehmen, keine weiteren E-Mails.",
        "Je souhaite me désabonner",
        "Denme de baja por favor",
        "Quero me descadastrar",
        "Disiscrivetemi",
        "Graag afmelden",
        "Отпишите меня",
        "配信停止を希望します",
        "请退订",
        "Please remove me, thank you.",
        "Bitte nicht mehr kontaktieren.",
        "Merci de ne plus me contacter.",
        "Per favore, non contattatemi più.",
        "Graag niet meer contacteren.",
        "Пожалуйста, больше не пишите мне.",
        "请不要再联系我。",
        "Kontakta mig inte igen, tack.",
        "Kontakt mig venligst ikke igen.",
        "Proszę więcej do mnie nie pisać.",
    ):
        assert classify_offline(text, TODAY).category == "unsubscribe", text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("back on 3 January", date(2027, 1, 3)),  # the next occurrence
        ("I'm on PTO until Dec 14, back Dec 15.", date(2026, 12, 15)),  # the latest date named
        ("ab dem 14.12. wieder im Büro", date(2026, 12, 14)),
        ("Estou de férias até 9 de dezembro", date(2026, 12, 9)),
        ("Я в отпуске до 14 декабря", date(2026, 12, 14)),
        ("12月10日まで不在です", date(2026, 12, 10)),
        ("out until 2026-12-01", date(2026, 12, 1)),
        ("nothing here", None),
    ],
)
def test_return_dates(text: str, expected: date | None) -> None:
    assert return_date(text, TODAY) == expected


def test_contact_helper() -> None:
    assert referral_contact("please talk to Ana Lopez about it") == "Ana Lopez"
    assert referral_contact("no names here") is None


def test_exported_weights_round_trip() -> None:
    model = packaged_model()
    again = ReplyModel.from_bytes(model.to_bytes())
    text = "Could you send pricing and a case study?"
    assert again.probabilities(text) == pytest.approx(model.probabilities(text))
    assert set(model.classes) == set(CATEGORIES) and abs(sum(model.probabilities(text).values()) - 1) < 1e-9
