"""Replies: accepting them from any channel, classifying them, and acting on the result."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from flywheel.clients.llm import LlmUnavailable, OpenAIReplyClassifier
from flywheel.clients.secrets import webhook_secret
from flywheel.dal import outcomes as outcomes_dal
from flywheel.dal import suppressions as suppressions_dal
from flywheel.dal.connection import transaction
from flywheel.domain.effects import NEEDS_ATTENTION
from flywheel.domain.ingest import IncomingEvent, content_key
from flywheel.domain.lifecycle import EventType
from flywheel.domain.reply_rules import classify_offline
from flywheel.errors import DependencyUnavailable, NotFound
from flywheel.models.classification import Classification
from flywheel.models.replies import ReplyIn, ReplyJob
from flywheel.observability import logger
from flywheel.services.ingest import ingest_events
from flywheel.services.outbox import flush_after_commit
from flywheel.settings import get_settings


def _llm() -> OpenAIReplyClassifier | None:
    settings = get_settings()
    key = settings.openai_api_key or webhook_secret("openai_api_key")
    if not key:
        return None
    return OpenAIReplyClassifier(key, settings.classifier_model, base_url=settings.openai_base_url,
                                 timeout_s=settings.classifier_timeout_s, max_retries=settings.classifier_max_retries)


def classify_replies(jobs: list[ReplyJob]) -> list[Classification]:
    """Classify a batch side by side: the LLM when configured, the offline rules otherwise or on failure."""
    if not jobs:
        return []
    with transaction() as conn:
        contexts = outcomes_dal.reply_contexts(conn, [j.outcome_id for j in jobs])
    llm = _llm()

    def one(job: ReplyJob) -> Classification:
        if llm is not None:
            try:
                answer = llm.classify(job.text, contexts.get(job.outcome_id, {}))
                return Classification(**answer.model_dump(), source="llm", model=llm.model)
            except LlmUnavailable as exc:
                logger.warning("LLM classification failed; using the offline rules", extra={"error": str(exc)})
        return classify_offline(job.text, (job.received_at or datetime.now(UTC)).date())

    with ThreadPoolExecutor(max_workers=min(len(jobs), get_settings().classifier_concurrency)) as pool:
        return list(pool.map(one, jobs))


def store_classification(job: ReplyJob, result: Classification) -> dict[str, Any]:
    """One classification per reply (a redelivered job is a duplicate), stored with its effects
    (suppression on an unsubscribe, ReplyNeedsAttention through the outbox) in one transaction.

    The reply itself is stored too (a no-op when its webhook already did), so a classification
    never waits on a reply it refers to."""
    with transaction() as conn:
        if not outcomes_dal.existing_outcomes(conn, [job.outcome_id]):
            raise NotFound(f"no outcome {job.outcome_id}")
    provider, _, key = job.reply_key.partition(":")
    reply = IncomingEvent(
        provider=provider, event_key=key, event_type=EventType.REPLY.value,
        occurred_at=job.received_at or datetime.now(UTC), payload=job.model_dump(mode="json", by_alias=True),
        data={"text": job.text, "subject": job.subject, "from": job.sender}, outcome_id=str(job.outcome_id),
    )
    event = IncomingEvent(
        provider="classifier", event_key=job.reply_key, event_type=EventType.REPLY_CLASSIFIED.value,
        occurred_at=datetime.now(UTC), payload=result.model_dump(mode="json"),
        data={"reply_key": job.reply_key, **result.model_dump(mode="json"),
              **({"text": job.text[:2000]} if result.category in NEEDS_ATTENTION else {})},
        outcome_id=str(job.outcome_id),
    )
    stored = ingest_events([reply, event], window_days=get_settings().attribution_window_days)
    if stored.outbox:
        flush_after_commit(["events"])
    with single_metric(name="ReplyClassified", unit=MetricUnit.Count, value=1, namespace="Flywheel") as metric:
        metric.add_dimension(name="category", value=result.category)
        metric.add_dimension(name="source", value=result.source)
    return {**stored.as_dict(), "category": result.category, "source": result.source}


def submit_reply(reply: ReplyIn) -> dict[str, Any]:
    """Store a reply from another channel and queue it for the same classifier."""
    settings = get_settings()
    if not settings.replies_queue_url:
        raise DependencyUnavailable("replies queue is not configured")
    with transaction() as conn:
        if not outcomes_dal.existing_outcomes(conn, [reply.outcome_id]):
            raise NotFound(f"no outcome {reply.outcome_id}", outcome_id=str(reply.outcome_id))
    occurred = reply.occurred_at or datetime.now(UTC)
    key = reply.external_id or content_key({"outcome_id": str(reply.outcome_id), "text": reply.text,
                                            "occurred_at": occurred.isoformat()})
    event = IncomingEvent(
        provider=f"api_{reply.channel}", event_key=key, event_type=EventType.REPLY.value, occurred_at=occurred,
        payload=reply.model_dump(mode="json"), data={"text": reply.text, "subject": reply.subject,
                                                     "channel": reply.channel},
        outcome_id=str(reply.outcome_id),
    )
    stored = ingest_events([event], window_days=settings.reply_window_days)
    # the reply went to the outbox with the event; send it now (the sweep retries a failure)
    flush_after_commit(["replies"])
    return {"reply_key": f"{event.provider}:{key}", "outcome_id": str(reply.outcome_id), "queued": True,
            "duplicate": stored.duplicates == 1}


def list_suppressions(org_id: str, since: datetime | None, limit: int) -> dict[str, Any]:
    with transaction() as conn:
        rows = suppressions_dal.list_suppressions(conn, org_id, since, limit)
    return {"org_id": org_id, "suppressions": rows, "count": len(rows)}
