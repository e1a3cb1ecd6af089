"""The one place that creates the Powertools Logger, Metrics and Tracer.

Traces carry timings and call names only: the Tracer never records a handler's response or an
exception's message (either can hold lead emails, message bodies or reply text), and only the
AWS SDK is patched (it records the service, operation and resource names, not bodies). The HTTP
clients (OpenAI, CRM APIs) use httpx2, which the X-Ray SDK cannot patch; asking it to patch
`httpx` would import a module the layer does not ship and fail every cold start in Lambda.
Every log line carries a correlation id: the API Gateway request id, the SQS message id of the
record being handled, or the Step Functions execution ARN.
"""

from functools import partial

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

NAMESPACE = "Flywheel"

logger = Logger()
metrics = Metrics(namespace=NAMESPACE)
tracer = Tracer(patch_modules=["botocore"])
# every decorator of this tracer is told never to capture (an explicit choice wins over the
# POWERTOOLS_TRACER_CAPTURE_* environment), so no configuration can turn capturing on
tracer.capture_lambda_handler = partial(  # type: ignore[method-assign]
    tracer.capture_lambda_handler, capture_response=False, capture_error=False
)
tracer.capture_method = partial(  # type: ignore[method-assign]
    tracer.capture_method, capture_response=False, capture_error=False
)


def count(name: str, value: float = 1, **dimensions: str) -> None:
    """One metric with its own dimensions (plus `service`), written at once: a dashboard and an
    alarm can then slice it (events per provider, replies per category and source...)."""
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE) as metric:
        for key, item in dimensions.items():
            metric.add_dimension(name=key, value=item)
