"""ClassifierFunction: classify replies from the queue; each bad record fails alone."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from flywheel.models.classification import Classification
from flywheel.models.replies import ReplyJob
from flywheel.observability import logger, metrics, tracer
from flywheel.services.replies import classify_replies, store_classification

processor = BatchProcessor(event_type=EventType.SQS)


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
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    jobs = _jobs(event["Records"])
    logger.set_correlation_id(",".join(jobs))  # the batch's SQS message ids, until each record is stored
    valid = {mid: job for mid, job in jobs.items() if isinstance(job, ReplyJob)}
    # the whole batch is classified side by side before any record is stored
    results: dict[str, Classification] = dict(zip(valid, classify_replies(list(valid.values())), strict=True))

    def store(record: SQSRecord) -> dict[str, Any]:
        logger.set_correlation_id(record.message_id)
        job = jobs[record.message_id]
        if isinstance(job, ValidationError):
            raise job
        return store_classification(job, results[record.message_id])

    return process_partial_response(event=event, record_handler=store, processor=processor, context=context)
