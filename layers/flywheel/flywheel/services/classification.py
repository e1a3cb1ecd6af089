"""Classifying replies (ClassifierFunction): the configured LLM, the offline classifier otherwise or
when the LLM fails, and storing the result with its effects."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any

from flywheel.clients.llm import (
    BedrockReplyClassifier,
    LlmQuotaExhausted,
    LlmUnavailable,
    OpenAIReplyClassifier,
    ReplyClassifier,
)
from flywheel.clients.secrets import llm_secret, openai_api_key
from flywheel.dal import outcomes as outcomes_dal
from flywheel.dal.connection import transaction
from flywheel.domain.effects import NEEDS_ATTENTION
from flywheel.domain.ingest import IncomingEvent
from flywheel.domain.lifecycle import EventType
from flywheel.errors import DependencyUnavailable, NotFound
from flywheel.models.classification import Classification
from flywheel.models.replies import ReplyJob
from flywheel.observability import count, logger
from flywheel.services.ingest import ingest_events
from flywheel.services.outbox import flush_after_commit
from flywheel.settings import get_settings


def llm_classifier() -> ReplyClassifier | None:
    """The configured LLM backend, or None for the offline classifier."""
    settings = get_settings()
    backend, model = settings.classifier_backend, settings.classifier_model_id
    common: dict[str, Any] = {
        "timeout_s": settings.classifier_timeout_s,
        "max_retries": settings.classifier_max_retries,
    }
    if backend == "offline":
        return None
    if backend == "bedrock":
        return BedrockReplyClassifier(model, region=settings.classifier_region, **common)
    if backend == "openai_compatible":
        base_url = settings.classifier_base_url or settings.openai_base_url
        if not base_url:
            raise DependencyUnavailable("CLASSIFIER_BACKEND=openai_compatible needs CLASSIFIER_BASE_URL")
        # local servers (vLLM, Ollama) take no key, but the SDK wants a non-empty one
        compatible_key = settings.classifier_api_key or llm_secret("classifier_api_key") or "unused"
        return OpenAIReplyClassifier(
            compatible_key, model, base_url=base_url, json_mode=settings.classifier_json_mode, **common
        )
    key = openai_api_key()
    if not key:
        if backend == "openai":
            logger.error("CLASSIFIER_BACKEND=openai but no OpenAI key is configured; using the offline classifier")
        return None
    return OpenAIReplyClassifier(
        key, model, base_url=settings.openai_base_url, json_mode=settings.classifier_json_mode, **common
    )


def classify_text(llm: ReplyClassifier | None, text: str, context: dict[str, Any], today: date) -> Classification:
    """One reply: the LLM when configured, the offline classifier otherwise or when it fails."""
    if llm is not None:
        try:
            answer = llm.classify(text, context)
            from flywheel.domain.reply_rules import email_opt_out

            return Classification(
                **answer.model_dump(),
                source="llm",
                model=llm.model,
                email_opt_out=answer.category != "unsubscribe" and email_opt_out(text),
            )
        except LlmQuotaExhausted as exc:  # an operator must act (billing): logged as an error
            logger.error("LLM quota exhausted; using the offline classifier", extra={"error": str(exc)})
        except LlmUnavailable as exc:
            logger.warning("LLM classification failed; using the offline classifier", extra={"error": str(exc)})
    # the offline classifier's rules (a few hundred patterns) compile on its first use: with an LLM
    # configured, a cold start that never falls back does not build them
    from flywheel.domain.reply_rules import classify_offline

    return classify_offline(text, today)


def classify_replies(jobs: list[ReplyJob]) -> list[Classification | Exception]:
    """Classify a batch side by side: the LLM when configured, the offline classifier otherwise or on failure.

    A reply whose classification raises gets its exception in its place, so it fails alone and the
    others are stored. What the whole batch needs (the replies' contexts from the database, the LLM
    client) still raises: the invocation fails and SQS redelivers the whole batch."""
    if not jobs:
        return []
    with transaction() as conn:
        contexts = outcomes_dal.reply_contexts(conn, [j.outcome_id for j in jobs])
    llm = llm_classifier()

    def one(job: ReplyJob) -> Classification | Exception:
        try:
            return classify_text(
                llm, job.text, contexts.get(job.outcome_id, {}), (job.received_at or datetime.now(UTC)).date()
            )
        except Exception as exc:  # noqa: BLE001 - one reply's failure is that reply's (it is redelivered alone)
            return exc

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
        provider=provider,
        event_key=key,
        event_type=EventType.REPLY.value,
        occurred_at=job.received_at or datetime.now(UTC),
        payload=job.model_dump(mode="json", by_alias=True),
        data={"text": job.text, "subject": job.subject, "from": job.sender},
        outcome_id=str(job.outcome_id),
    )
    event = IncomingEvent(
        provider="classifier",
        event_key=job.reply_key,
        event_type=EventType.REPLY_CLASSIFIED.value,
        occurred_at=datetime.now(UTC),
        payload=result.model_dump(mode="json"),
        data={
            "reply_key": job.reply_key,
            **result.model_dump(mode="json"),
            **({"text": job.text[:2000]} if result.category in NEEDS_ATTENTION else {}),
        },
        outcome_id=str(job.outcome_id),
    )
    stored = ingest_events([reply, event], window_days=get_settings().attribution_window_days)
    if stored.outbox:
        flush_after_commit(["events"])
    if (event.provider, event.event_key) not in stored.new_effect_keys:
        # SQS redelivered a reply whose classification is stored: counting it again would tell the
        # dashboard and the fallback-share alarm about a classification that did not happen
        logger.info("reply classification already stored (redelivered)", extra={"reply_key": job.reply_key})
        return {**stored.as_dict(), "category": result.category, "source": result.source}
    logger.info(
        "reply classified", extra={"reply_key": job.reply_key, "category": result.category, "source": result.source}
    )
    count("ReplyClassified", category=result.category, source=result.source)
    count("ReplyClassifiedBySource", source=result.source)  # the fallback-share alarm reads this one
    return {**stored.as_dict(), "category": result.category, "source": result.source}
