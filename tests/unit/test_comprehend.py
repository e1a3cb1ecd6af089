"""The Comprehend second pass against botocore's Stubber, which checks every request against the
real service model; responses follow the documented DetectPiiEntities shape
(https://docs.aws.amazon.com/comprehend/latest/APIReference/API_DetectPiiEntities.html)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber

from flywheel.clients import aws
from flywheel.clients.comprehend import ComprehendPii
from flywheel.domain.redaction import COMPREHEND_MAX_BYTES, apply_spans
from flywheel.errors import DependencyUnavailable, InvalidInput


@pytest.fixture
def comprehend(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stubber, list[str]]]:
    client = boto3.client("comprehend", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    sent: list[str] = []

    def record(params: dict, **_: object) -> None:
        # the service refuses more than 100 KB of UTF-8 (TextSizeLimitExceededException); the model
        # only says min 1, so the limit is enforced here
        assert len(params["Text"].encode("utf-8")) <= COMPREHEND_MAX_BYTES
        sent.append(params["Text"])

    client.meta.events.register("provide-client-params.comprehend.DetectPiiEntities", record)
    monkeypatch.setattr(aws, "client", lambda service: client)
    monkeypatch.setattr("flywheel.clients.comprehend.client", lambda service: client)
    with Stubber(client) as stubber:
        yield stubber, sent
        stubber.assert_no_pending_responses()


def entity(text: str, value: str, kind: str, score: float = 0.99) -> dict:
    begin = text.index(value)
    return {"Score": score, "Type": kind, "BeginOffset": begin, "EndOffset": begin + len(value)}


def test_many_texts_go_in_few_requests_and_entities_map_back(comprehend) -> None:
    stubber, sent = comprehend
    texts = [
        "Ask Paul Santos in accounts.",
        "Nothing here.",
        "Meet at 123 Any Street, Seattle on 3 May.",
        "x " * 60_000,
    ]
    joined = "\n\n".join(texts[:3])  # the short texts open the first request; the long one is cut in two
    stubber.add_response(
        "detect_pii_entities",
        {
            "Entities": [
                entity(joined, "Paul Santos", "NAME"),
                entity(joined, "123 Any Street, Seattle", "ADDRESS"),
                entity(joined, "3 May", "DATE_TIME"),
                entity(joined, "accounts", "USERNAME", score=0.2),
            ]
        },
        None,
    )
    stubber.add_response("detect_pii_entities", {"Entities": []}, None)
    pii = ComprehendPii("en", min_score=0.5)
    found = pii.find(texts)
    assert [apply_spans(t, s) for t, s in zip(texts[:3], found[:3], strict=True)] == [
        "Ask {{name}} in accounts.",
        "Nothing here.",
        "Meet at {{address}} on 3 May.",
    ]
    assert len(sent) == 2 and pii.usage.requests == 2 and sent[0].startswith(joined + "\n\nx x")
    assert "".join(sent).count("x") == 60_000  # nothing lost at the cut
    assert pii.usage.units == sum(max(3, -(-len(t) // 100)) for t in sent)
    assert pii.usage.entities == {"name": 1, "address": 1}


def test_a_failing_call_fails_the_pass_it_is_never_skipped(comprehend) -> None:
    stubber, _ = comprehend
    stubber.add_client_error(
        "detect_pii_entities", service_error_code="TextSizeLimitExceededException", http_status_code=400
    )
    with pytest.raises(DependencyUnavailable, match="TextSizeLimitExceededException"):
        ComprehendPii().find(["Paul Santos"])


def test_only_the_languages_comprehend_detects_pii_in() -> None:
    with pytest.raises(InvalidInput):
        ComprehendPii("de")
