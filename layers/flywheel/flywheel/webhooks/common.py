"""Parsing helpers shared by the webhook adapters."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from flywheel.domain.inputs import BadValue, amount, email
from flywheel.errors import InvalidInput, MalformedPayload

M = TypeVar("M", bound=BaseModel)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_json(body: bytes) -> Any:
    """Strict JSON: no NaN / Infinity, no float that overflows, nesting a parser can survive."""
    try:
        return json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise MalformedPayload("body is nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # also integers over Python's digit limit
        raise MalformedPayload("body is not valid JSON") from exc


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def rejected(exc: BadValue, field: str) -> InvalidInput:
    return InvalidInput(f"{field}: {exc}", field=field)


def validate(model: type[M], raw: Any, prefix: str = "") -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = prefix + ".".join(str(p) for p in problem["loc"])
        raise InvalidInput(f"{field or 'body'}: {problem['msg']}", field=field) from exc


def money(value: Any) -> str | None:
    """An amount as an exact decimal string (CRMs send floats, strings or nothing)."""
    return amount(value)


def email_or_none(value: Any) -> str | None:
    """A contact email from a CRM field: an invalid one is no email, not an error."""
    try:
        return email(value)
    except BadValue:
        return None
