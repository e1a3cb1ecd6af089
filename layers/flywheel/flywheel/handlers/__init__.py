"""Handlers that live in the layer because their code package holds data, not Python (see README)."""
