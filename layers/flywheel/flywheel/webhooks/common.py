"""Parsing helpers shared by the webhook adapters."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from flywheel.errors import InvalidInput, MalformedPayload

M = TypeVar("M", bound=BaseModel)


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedPayload("body is not valid JSON") from exc


def validate(model: type[M], raw: Any, prefix: str = "") -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = prefix + ".".join(str(p) for p in problem["loc"])
        raise InvalidInput(f"{field or 'body'}: {problem['msg']}", field=field) from exc


def money(value: Any) -> str | None:
    """An amount as an exact decimal string (CRMs send floats, strings or nothing)."""
    if value in (None, ""):
        return None
    return str(Decimal(str(value)))


def email_or_none(value: Any) -> str | None:
    text = str(value or "").strip().lower()
    return text if "@" in text else None
