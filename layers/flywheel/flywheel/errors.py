"""Typed domain errors. The API glue maps each to one HTTP status (see flywheel.api)."""

from __future__ import annotations

from typing import Any


class FlywheelError(Exception):
    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class MalformedPayload(FlywheelError):
    """The body cannot be parsed at all (JSON, XML, form)."""

    code = "malformed_payload"


class InvalidInput(FlywheelError):
    """The body parses but a field has the wrong type or value."""

    code = "validation_error"


class NotFound(FlywheelError):
    code = "not_found"


class Conflict(FlywheelError):
    code = "conflict"


class RunClosed(Conflict):
    """A training run has ended (an operator cancelled it, its execution ended) while one of its
    steps was running: the step stops and starts nothing more (not retryable)."""

    code = "run_closed"


class PayloadTooLarge(FlywheelError):
    code = "payload_too_large"


class Unauthorized(FlywheelError):
    code = "unauthorized"


class Forbidden(FlywheelError):
    code = "forbidden"


class DependencyUnavailable(FlywheelError):
    """A dependency (database, provider API) is down; the caller may retry."""

    code = "service_unavailable"


class StatementCancelled(DependencyUnavailable):
    """The database cancelled a statement (its statement_timeout, or a cancel request); the
    transaction is rolled back and the caller may retry."""


class ProviderRefused(FlywheelError):
    """A fine-tuning provider will not run this job, or is not configured for it (not retryable)."""

    code = "provider_refused"


class ProviderQuotaExhausted(ProviderRefused):
    """The provider account's quota or billing is used up (OpenAI's 429 `insufficient_quota`): it
    looks like a rate limit but retrying does not clear it; someone must add credits or raise a
    limit. Not retryable, and no verdict on a model (a smoke test that meets it fails the run, not
    the model's test)."""

    code = "provider_quota_exhausted"


class MigrationError(FlywheelError):
    code = "migration_error"


class ReportFailed(FlywheelError):
    """Some organisations' reports could not be written (the others were)."""

    code = "report_failed"
