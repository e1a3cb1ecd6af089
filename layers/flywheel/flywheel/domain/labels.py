"""Training label, weight and quality score of an outcome (the seed system's tables).

The label follows the strongest evidence present, never the latest: an unsubscribe that
arrives after a won deal leaves the outcome positive.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal, Protocol


class OutcomeState(Protocol):
    """What the label and the score read of an outcome: `domain.lifecycle.OutcomeState` provides it
    (a protocol here, so that labels does not import lifecycle, which imports labels)."""

    @property
    def deal_status(self) -> str | None: ...
    @property
    def deal_value(self) -> Decimal | None: ...
    @property
    def shared_deal_status(self) -> str | None: ...
    @property
    def shared_deal_value(self) -> Decimal | None: ...
    @property
    def meeting_completed_at(self) -> datetime | None: ...
    @property
    def has_live_meeting(self) -> bool: ...
    @property
    def replied_at(self) -> datetime | None: ...
    @property
    def reply_category(self) -> str | None: ...
    @property
    def reply_sentiment_score(self) -> float | None: ...
    @property
    def bounced_at(self) -> datetime | None: ...
    @property
    def dropped_at(self) -> datetime | None: ...
    @property
    def spam_reported_at(self) -> datetime | None: ...
    @property
    def unsubscribed_at(self) -> datetime | None: ...
    @property
    def delivered_at(self) -> datetime | None: ...
    @property
    def first_opened_at(self) -> datetime | None: ...
    @property
    def first_clicked_at(self) -> datetime | None: ...


class TrainingLabel(StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"
    NEUTRAL = "neutral"


# what a reply is about (the classifier's answer, a person's correction)
Category = Literal[
    "interested",
    "meeting_request",
    "question",
    "not_now",
    "objection",
    "not_interested",
    "unsubscribe",
    "out_of_office",
    "wrong_person",
    "referral",
    "auto_reply",
    "other",
]
CATEGORIES: tuple[str, ...] = Category.__args__  # type: ignore[attr-defined]

INTERESTED_CATEGORIES = frozenset({"interested", "meeting_request"})
OBJECTION_CATEGORIES = frozenset({"objection", "not_interested"})
NEGATIVE_REPLY_CATEGORIES = OBJECTION_CATEGORIES | {"unsubscribe"}

DEFAULT = (TrainingLabel.NEUTRAL, 1.0)


def _evidence(state: OutcomeState) -> list[tuple[float, int, TrainingLabel]]:
    """Every piece of evidence present as (weight, funnel depth, label)."""
    found: list[tuple[float, int, TrainingLabel]] = []
    add = found.append
    # a deal counted on another contact's message (shared_deal_status) is as good an outcome for this
    # message, which led to it too: the same label and full weight (the reports count it once)
    if "won" in (state.deal_status, state.shared_deal_status):
        add((10.0, 9, TrainingLabel.POSITIVE))
    if state.meeting_completed_at:
        add((7.0, 8, TrainingLabel.POSITIVE))
    if state.has_live_meeting:
        add((5.0, 7, TrainingLabel.POSITIVE))
    # a lost deal is deeper in the funnel than an interested reply of the same weight
    if "lost" in (state.deal_status, state.shared_deal_status):
        add((3.0, 6, TrainingLabel.NEGATIVE))
    if state.replied_at:
        category = state.reply_category
        if category in INTERESTED_CATEGORIES:
            add((3.0, 5, TrainingLabel.POSITIVE))
        elif category in OBJECTION_CATEGORIES:
            add((2.0, 4, TrainingLabel.NEGATIVE))
        elif category == "unsubscribe":
            add((0.5, 2, TrainingLabel.NEGATIVE))
        else:
            add((1.0, 3, TrainingLabel.NEUTRAL))
    if state.bounced_at or state.dropped_at or state.spam_reported_at or state.unsubscribed_at:
        add((0.5, 1, TrainingLabel.NEGATIVE))
    return found


def label_outcome(state: OutcomeState) -> tuple[TrainingLabel, float]:
    evidence = _evidence(state)
    if not evidence:
        return DEFAULT
    weight, _, label = max(evidence, key=lambda item: (item[0], item[1]))
    return label, weight


def quality_score(state: OutcomeState, icp_score: float | None = None) -> float:
    """The seed's score in [0, 1]; missing values count as absent, never as errors."""
    score = 0.0
    if state.delivered_at:
        score += 0.1
    if state.first_opened_at or state.first_clicked_at:
        score += 0.1
    if state.first_clicked_at:
        score += 0.15
    if state.replied_at:
        score += 0.2
        sentiment = state.reply_sentiment_score
        if sentiment is not None:
            if sentiment > 0.5:
                score += 0.2
            elif sentiment < -0.3:
                score -= 0.1
    if state.has_live_meeting:
        score += 0.3
    if state.meeting_completed_at:
        score += 0.4
    if "won" in (state.deal_status, state.shared_deal_status):
        score += 0.5
        deals = ((state.deal_status, state.deal_value), (state.shared_deal_status, state.shared_deal_value))
        value = max(float(v or 0) for s, v in deals if s == "won")
        if value >= 50_000:
            score += 0.2
        elif value >= 20_000:
            score += 0.1
    if icp_score is not None:
        score += 0.1 * max(0.0, min(1.0, float(icp_score)))
    return round(max(0.0, min(1.0, score)), 4)
