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
    ]
    library = EmailReplyParser(languages=reply_text.LANGUAGES)
    fast = reply_text._parser()
    assert len(texts) > 400
    for text in texts:
        normalised = reply_text.normalise_newlines(text)
        assert fast(normalised) == library.parse_reply(text=normalised), text[:80]
