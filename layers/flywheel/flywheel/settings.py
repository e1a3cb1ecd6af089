"""One typed settings object, read from the environment once per execution environment."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, Field


class Settings(BaseModel):
    stage: str = "dev"
    # Either a libpq URL (local, tests) or an RDS-style Secrets Manager secret (deployed).
    database_url: str | None = None
    database_secret_arn: str | None = None
    db_connect_timeout_s: int = Field(default=5, ge=1, le=60)
    max_messages_per_request: int = Field(default=500, ge=1, le=5000)
    max_body_bytes: int = Field(default=6 * 1024 * 1024, ge=1024)

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {
            name: env[name.upper()]
            for name in cls.model_fields
            if env.get(name.upper()) not in (None, "")
        }
        return cls.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()


def reset_settings() -> None:
    """Forget the cached settings (tests and the local runner change the environment)."""
    get_settings.cache_clear()
