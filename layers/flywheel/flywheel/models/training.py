"""Request models of the training API."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from flywheel.models.messages import Clean


class ExperimentSettings(Clean):
    """How the challenger's experiment is planned and staged (defaults: 3 % baseline, 10 % lift)."""

    model_config = ConfigDict(extra="forbid")

    baseline: float = Field(default=0.03, gt=0, lt=1)
    mde: float = Field(default=0.10, gt=0, le=5)
    canary_days: float = Field(default=2, ge=0, le=30)
    min_runtime_days: float = Field(default=7, ge=0, le=90)
    max_runtime_days: float = Field(default=56, ge=1, le=365)
    ab_share: float = Field(default=0.5, gt=0, lt=1)


class RunRequest(Clean):
    model_config = ConfigDict(extra="forbid")

    min_quality_score: float = Field(default=0.6, ge=0, le=1)
    deploy: bool = False
    canary_percentage: float = Field(default=10, gt=0, le=50)
    since_days: int = Field(default=90, ge=1, le=3650)
    provider: Literal["openai", "bedrock"] | None = None
    base_model: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{2,199}$")
    method: Literal["supervised", "dpo"] | None = None
    wait_seconds: int = Field(default=600, ge=0, le=86_400)
    max_wait_seconds: int | None = Field(default=None, ge=0)
    scope: str = Field(default="global", pattern=r"^[a-z0-9_-]{1,64}$")
    experiment_config: ExperimentSettings | None = None


class DeployRequest(Clean):
    model_config = ConfigDict(extra="forbid")

    canary_percentage: float = Field(default=10, gt=0, le=50)
    reason: str = Field(default="manual deploy", min_length=3, max_length=500)


class RollbackRequest(Clean):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500)


class PromoteRequest(Clean):
    model_config = ConfigDict(extra="forbid")

    force: bool = False
    reason: str | None = Field(default=None, min_length=3, max_length=500)
