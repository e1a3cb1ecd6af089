"""TrainingPipelineFunction: one step of the weekly training state machine per invocation."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.observability import logger, metrics, tracer
from flywheel.services.training import run_step


@logger.inject_lambda_context(correlation_id_path="execution_arn || state.execution_arn")  # the execution
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # errors propagate: Step Functions matches their class name in Retry/Catch
    state = dict(event.get("state") or {})
    if event.get("execution_arn"):
        state["execution_arn"] = event["execution_arn"]
    logger.append_keys(run_id=state.get("run_id"), step=event.get("step"))
    return run_step(str(event.get("step")), state, remaining_s=context.get_remaining_time_in_millis() / 1000)
