"""SQS partial batch responses: each record that fails is reported alone and redelivered alone.

The response is the one Lambda reads when the event source mapping has
`FunctionResponseTypes: [ReportBatchItemFailures]`
(https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html):
`{"batchItemFailures": [{"itemIdentifier": <messageId>}, ...]}`, an empty list when all succeeded.
When every record failed, the invocation fails (as Powertools' BatchProcessor does): the whole
batch comes back and the function's error metric and alarm see it.

Not Powertools' batch utility: it imports every AWS event class and, once pydantic is loaded,
builds all of its parser models, some 40 ms of every cold start for this loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from flywheel.observability import logger


class BatchFailed(Exception):
    """Every record of the batch failed."""


def _describe(exc: Exception) -> str:
    """The failure without the values: a validation error names fields, never the reply text."""
    if isinstance(exc, ValidationError):
        fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors(include_input=False)})
        return f"ValidationError: {exc.error_count()} error(s) in {', '.join(fields[:10])}"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def partial_batch_response(
    records: Iterable[dict[str, Any]], handle: Callable[[dict[str, Any]], object]
) -> dict[str, list[dict[str, str]]]:
    """Run `handle` on each SQS record; the message ids of those that raised are the failures."""
    failures: list[dict[str, str]] = []
    count = 0
    for record in records:
        count += 1
        try:
            handle(record)
        except Exception as exc:  # noqa: BLE001 - any failure of one record is that record's: it is redelivered
            logger.warning(
                "record failed; it will be redelivered",
                extra={"message_id": record["messageId"], "error": _describe(exc)},
            )
            failures.append({"itemIdentifier": record["messageId"]})
    if count and len(failures) == count:
        raise BatchFailed(f"all {count} records failed")
    return {"batchItemFailures": failures}
