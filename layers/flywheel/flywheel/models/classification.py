"""The classification of a reply, as the LLM must produce it and as it is stored."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flywheel.domain.labels import Category

InterestLevel = Literal["none", "low", "medium", "high"]
ObjectionType = Literal["price", "timing", "competitor", "authority", "no_need", "none"]


class LlmClassification(BaseModel):
    """What the model is asked to return (strict structured output: every field present)."""

    model_config = ConfigDict(extra="forbid")

    category: Category
    sentiment_score: float = Field(ge=-1, le=1)
    interest_level: InterestLevel
    objection_type: ObjectionType
    referral_contact: str | None = Field(description="name or email of the person the lead points to, if any")
    return_date: date | None = Field(description="for out-of-office replies: the date the lead is back")
    confidence: float = Field(ge=0, le=1)
    reason: str = Field(max_length=300, description="one line: why this category")


class Classification(LlmClassification):
    source: Literal["llm", "fallback"]
    model: str
    # set from the reply's text by a rule, whichever classifier answered: "Don't email me, call me"
    # is a request to be called (its category) and a refusal of e-mail, which is honoured (the lead's
    # address is suppressed, reason reply_email_opt_out)
    email_opt_out: bool = False
