"""Request models of the training API."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from flywheel.models.base import Clean


class ExperimentSettings(Clean):
    """How the challenger's experiment is planned and staged. The plan measures the weekly volume and
    the baseline rate from the last four weeks of outcomes; `baseline` and `weekly_volume` are used
    only where that history is too thin (the plan then says so)."""

    model_config = ConfigDict(extra="forbid")

    mde: float = Field(default=0.10, gt=0, le=5)
    baseline: float | None = Field(default=None, gt=0, lt=1)
    weekly_volume: int | None = Field(default=None, gt=0, le=100_000_000)
    canary_min_days: float = Field(default=2, ge=1, le=30)
    min_runtime_days: float = Field(default=7, ge=0, le=90)
    max_runtime_days: float = Field(default=56, ge=7, le=365)
    ab_share: float = Field(default=0.5, gt=0, lt=1)
    # what the canary must catch: the 1-day bounce rate multiplied by this, with 95 % power
    canary_ratio: float = Field(default=2.0, gt=1, le=20)
    # hours after a window closes before its leads count (late webhook deliveries land inside it)
    settle_hours: float = Field(default=26, ge=0, le=168)
    # non-inferiority margins (absolute rate differences) that replace the defaults
    margins: dict[str, float] | None = None

    @field_validator("margins")
    @classmethod
    def _known_guardrails(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        from flywheel.domain.experiments import DEFAULT_MARGINS

        for name, margin in (value or {}).items():
            if name not in DEFAULT_MARGINS:
                raise ValueError(f"unknown guardrail {name!r} (known: {', '.join(sorted(DEFAULT_MARGINS))})")
            if not 0 < margin < 1:
                raise ValueError(f"margin of {name} must be between 0 and 1")
        return value

    @model_validator(mode="after")
    def _stages_fit_the_runtime(self) -> ExperimentSettings:
        # an experiment that must run longer than it may can never promote: refused, not planned
        for name in ("min_runtime_days", "canary_min_days"):
            if getattr(self, name) > self.max_runtime_days:
                raise ValueError(
                    f"{name} ({getattr(self, name):g}) is longer than max_runtime_days ({self.max_runtime_days:g})"
                )
        return self


class RunRequest(Clean):
    """Numbers and flags are taken as JSON numbers and booleans only (strict): `true` is no day
    count and "0.5" no score."""

    model_config = ConfigDict(extra="forbid")

    min_quality_score: float = Field(default=0.6, ge=0, le=1, strict=True)
    deploy: bool = Field(default=False, strict=True)
    canary_percentage: float = Field(default=10, gt=0, le=50, strict=True)
    since_days: int = Field(default=90, ge=1, le=3650, strict=True)
    provider: Literal["openai", "bedrock"] | None = None
    base_model: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{2,199}$")
    method: Literal["supervised", "dpo"] | None = None
    wait_seconds: int = Field(default=600, ge=0, le=86_400, strict=True)
    # at most a day, as TRAINING_MAX_WAIT_S: the state machine's TimeoutSeconds is above the longest run
    max_wait_seconds: int | None = Field(default=None, ge=0, le=86_400, strict=True)
    scope: str = Field(default="global", pattern=r"^[a-z0-9_-]{1,64}$")
    experiment_config: ExperimentSettings | None = None


class DeployRequest(Clean):
    model_config = ConfigDict(extra="forbid")

    canary_percentage: float = Field(default=10, gt=0, le=50, strict=True)
    reason: str = Field(default="manual deploy", min_length=3, max_length=500)
    experiment_config: ExperimentSettings | None = None


class RollbackRequest(Clean):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500)
    # roll back this model (the challenger, or the champion to restore the previous one): when it is
    # already out of service, nothing changes (safe to retry). Without it only a running challenger
    # is withdrawn; a retry then changes nothing (409) instead of demoting the champion.
    model_id: str | None = Field(default=None, min_length=1, max_length=200)


class ReasonRequest(Clean):
    """Archiving a model, restarting an experiment's stage."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500)


class PromoteRequest(Clean):
    model_config = ConfigDict(extra="forbid")

    force: bool = False
    reason: str | None = Field(default=None, min_length=3, max_length=500)
