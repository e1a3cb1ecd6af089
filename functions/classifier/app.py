"""ClassifierFunction: classify replies from the queue; each bad record fails alone."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from flywheel.batch import partial_batch_response
from flywheel.models.classification import Classification
from flywheel.models.replies import ReplyJob
from flywheel.observability import logger, metrics, tracer
from flywheel.services.classification import classify_replies, store_classification


def _jobs(records: list[dict[str, Any]]) -> dict[str, ReplyJob | ValidationError]:
    parsed: dict[str, ReplyJob | ValidationError] = {}
    for record in records:
        try:
            parsed[record["messageId"]] = ReplyJob.model_validate_json(record["body"])
        except ValidationError as exc:  # malformed: this record fails fast, the rest go on
            parsed[record["messageId"]] = exc
    return parsed


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    jobs = _jobs(event["Records"])
    logger.set_correlation_id(",".join(jobs))  # the batch's SQS message ids, until each record is stored
    valid = {mid: job for mid, job in jobs.items() if isinstance(job, ReplyJob)}
    # the whole batch is classified side by side before any record is stored; a record whose
    # classification raised holds its exception and fails alone below
    results: dict[str, Classification | Exception] = dict(
        zip(valid, classify_replies(list(valid.values())), strict=True)
    )

    def store(record: dict[str, Any]) -> dict[str, Any]:
        logger.set_correlation_id(record["messageId"])
        job = jobs[record["messageId"]]
        if isinstance(job, ValidationError):
            raise job
        result = results[record["messageId"]]
        if isinstance(result, Exception):
            raise result
        return store_classification(job, result)

    return partial_batch_response(event["Records"], store)
