"""Review hub9c-3: contacts' events of one in-house deal id and the registration of the first-sent
contact's message, all at once on separate connections (barrier after each recompute)."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from flywheel.dal.connection import close_connection
from tests.integration import test_concurrency as race
from tests.integration.test_deal_attribution import SENT, rolled_deals, run
from tests.integration.test_shared_deals import (  # noqa: F401 - crm is a fixture
    contact_message,
    crm,
    deals,
    won_and_revenue,
)


@pytest.mark.parametrize("rounds", range(3))
@pytest.mark.parametrize("last", ["won", "lost"])
def test_words_and_registration_at_once(db, db_url, crm, monkeypatch, last: str, rounds: int) -> None:  # noqa: F811
    from flywheel.domain.ingest import IncomingEvent
    from flywheel.models.messages import MessageIn
    from flywheel.services import ingest as ingest_service
    from flywheel.services import outcomes as outcomes_service

    leads = range(10, 14)
    run(race.registration([contact_message(i, SENT + timedelta(hours=i)) for i in leads if i != 10]))
    close_connection()
    barrier = threading.Barrier(len(leads) + 1)
    for mod in (ingest_service, outcomes_service):
        real = mod.recompute

        def recompute(conn: Any, *args: Any, _real=real, **kwargs: Any) -> None:
            _real(conn, *args, **kwargs)
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(3)

        monkeypatch.setattr(mod, "recompute", recompute)
    errors: list[BaseException] = []

    def deliver(i: int) -> None:
        # lead 13 alone gets the later word (the others were removed from the deal)
        kind, day, value = (f"deal_{last}", 4, "2000.00") if i == 13 else ("deal_won", 3, "1000.00")
        event = IncomingEvent(
            "crm",
            f"acme|w-{i}",
            kind,
            SENT + timedelta(days=day),
            {"event": kind},
            {"deal_id": "crm:D-1", "value": value, "currency": "USD"},
            org_id="acme",
            email=race.lead(i),
        )
        try:
            ingest_service.ingest_events([event], window_days=90)
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_connection()

    def register() -> None:
        try:
            outcomes_service.register_messages([MessageIn(**contact_message(10, SENT))])
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_connection()

    threads = [threading.Thread(target=deliver, args=(i,)) for i in leads] + [threading.Thread(target=register)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    expected = (1, Decimal("2000.00")) if last == "won" else (0, 0)
    assert won_and_revenue(db) == expected, deals(db)
    assert rolled_deals(db) == (expected[0], int(expected[1]))
