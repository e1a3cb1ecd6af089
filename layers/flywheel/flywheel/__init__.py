"""Flywheel: outcome tracking, training and experimentation for outbound sales messages."""

__version__ = "0.1.0"
