"""The base every inbound model shares: what PostgreSQL cannot store is refused first. A module of
its own, so that a function needs only the models it serves (the message models are the heaviest
to build)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from flywheel.domain.inputs import check_json


class Clean(BaseModel):
    """Refuses, before any field is read, what PostgreSQL cannot store: NUL, unpaired surrogates,
    NaN / Infinity, nesting deeper than 32 levels."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        problem = check_json(data)
        if problem:
            raise ValueError(f"body {problem}")
        return data


class Strict(Clean):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
