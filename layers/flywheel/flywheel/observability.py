"""The one place that creates the Powertools Logger, Metrics and Tracer.

Traces carry timings and call names only: the Tracer never records a handler's response or an
exception's message (either can hold lead emails, message bodies or reply text), and only the
AWS SDK and HTTP clients are patched (they record the service, operation and URL, not bodies).
Every log line carries a correlation id: the API Gateway request id, the SQS message id of the
record being handled, or the Step Functions execution ARN.
"""

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

NAMESPACE = "Flywheel"

# read when `capture_lambda_handler` / `capture_method` decorate a function, i.e. after this
# module is imported: forced off here, so that no environment can turn them on
os.environ["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] = "false"
os.environ["POWERTOOLS_TRACER_CAPTURE_ERROR"] = "false"

logger = Logger()
metrics = Metrics(namespace=NAMESPACE)
tracer = Tracer(patch_modules=["botocore", "httpx"])


def count(name: str, value: float = 1, **dimensions: str) -> None:
    """One metric with its own dimensions (plus `service`), written at once: a dashboard and an
    alarm can then slice it (events per provider, replies per category and source...)."""
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE) as metric:
        for key, item in dimensions.items():
            metric.add_dimension(name=key, value=item)
