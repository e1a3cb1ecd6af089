"""The one place that creates the Powertools Logger, Metrics and Tracer."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
metrics = Metrics(namespace="Flywheel")
tracer = Tracer()
