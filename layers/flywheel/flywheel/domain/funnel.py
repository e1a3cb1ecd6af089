"""The outbound funnel of a group of messages: sent → delivered → human opens → replied →
positive reply → meeting → won, each step as a share of the messages sent with its Wilson interval."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flywheel.domain import stats

STEPS = ("sent", "delivered", "opened", "replied", "positive_reply", "meeting", "won")
LABELS = {
    "sent": "sent",
    "delivered": "delivered",
    "opened": "human opens",
    "replied": "replied",
    "positive_reply": "positive reply",
    "meeting": "meeting",
    "won": "won",
}
# replies that count as positive everywhere (leaderboard, experiments, reports)
POSITIVE_CATEGORIES = ("interested", "meeting_request")


def funnel(counts: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each step's count and its rate of the messages sent, with the 95 % Wilson interval."""
    sent = int(counts["sent"])
    return {step: {"count": int(counts[step]), **stats.proportion(int(counts[step]), sent)} for step in STEPS}
