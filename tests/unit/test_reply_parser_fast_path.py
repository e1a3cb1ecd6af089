"""The reply parser's fast path (no signature and disclaimer searches) answers exactly what the
library's `parse_reply` answers: `latest_reply` is the first part's content, which those searches
never change (a library update that changed that would fail here)."""

from __future__ import annotations

import json

from mailparser_reply import EmailReplyParser

from flywheel.domain import reply_text
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data"


def test_the_fast_path_answers_what_parse_reply_answers() -> None:
    texts = [
        json.loads(line)["text"]
        for name in ("replies_labelled.jsonl", "replies_blind.jsonl", "pii_planted.jsonl")
        for line in (DATA / name).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    texts += [
        "Thanks!\n\nOn Mon, 6 Jan 2025 at 10:00, Dana <d@x.example> wrote:\n> earlier\n> mail",
        "Best,\nSam\n--\nSam Lee | Acme\nThis e-mail is confidential.",
        "",
        "   \n\n",
        # where the header cue is near the limit of what the pattern needs
        "Hi Dana,\n\n" + "_" * 40 + "\nFrom: Sam\nSent: Monday\nTo: Dana\nSubject: Re: close\n\nold",
        "Hi\n\n\n" + "-" * 36 + "From: Sam\nTo: Dana\n\nold",
        "Hi\n  > > *From:* Sam\n> *Sent:* Monday\n\nold",
        "Hi\nDe : Sam\nEnvoyé : lundi\nÀ : Dana\nObjet : close\n\nold",
        "Hi\n发件人: Sam\n发送时间: 2025年1月6日\n收件人: Dana\n\nold",
        "Hi\n2025年1月6日(月) 10:00 Sam <sam@x.example>:\n> old",
        "Hi\n在 2025年1月6日 10:00，Sam 写道：\n> old",
        "Le lun. 6 janv. 2025 à 10:00, Sam <s@x.example> a écrit :\n> old",
        "Hi\n-----Original Message-----\nold",
        "See https://go.example/r/abc and call +1 415 555 0100 at 10:30.\nBest,\nSam",
        "https://go.example/r/abc\nwww.acme.example\nRe: your note",
        "Hi Dana,\nAt Northwind, close takes 11 days.\n\nBest,\nSam Lee\nHead of Sales\n+1 415 555 0100",
    ]
    library = EmailReplyParser(languages=reply_text.LANGUAGES)
    fast = reply_text._parser()
    assert len(texts) > 400
    for text in texts:
        normalised = reply_text.normalise_newlines(text)
        assert fast(normalised) == library.parse_reply(text=normalised), text[:80]


def test_a_text_without_a_header_cue_skips_the_header_pattern(monkeypatch) -> None:
    from mailparser_reply.parser import EmailMessage

    def refuse(self: EmailMessage) -> EmailMessage:
        raise AssertionError("the header pattern ran")

    monkeypatch.setattr(EmailMessage, "read", refuse)
    body = "Hi Dana,\n\nAt Northwind, close takes 11 days: see https://go.example/r/1.\n\nBest,\nSam\n+1 415 555 0100"
    assert reply_text._parser()(body) == body
