"""Serving: keeping each registered model's inference endpoint in step with the registry.

A Bedrock custom model is invoked through an on-demand deployment (or provisioned throughput,
billed by the hour while it exists): archiving or failing a model deletes it, and so does a `ready`
model's wait — no traffic goes to a model without a role — once its run has ended and its serving
kind's grace period has passed (`SERVING_IDLE_PROVISIONED_S`, `SERVING_IDLE_ON_DEMAND_S`).
Deploying the model later (`POST /training/deploy`, a rollback to an archived champion) creates it
again. `sync` does all of this, after every registry change and daily; it is idempotent, so a
failed call is simply done by the next one.

Syncs run side by side (the training API's after a rollback, the evaluator's daily one) and the
registry changes while a provider call takes seconds, so a sync never acts on a row it merely read:
- it first claims the out-of-step rows (`serving_claimed_by`, for `CLAIM_S`); another sync skips a
  claimed row, so one deployment is created per restore, not one per sync;
- no transaction stays open across a provider call; after each call the row is read again, locked,
  and the call's result recorded with it — and if the registry changed meanwhile (the model it was
  retiring became champion again), the sync acts again on what the row now asks for;
- a sync that dies mid-call (a Lambda at its timeout) leaves a claim that expires after `CLAIM_S`,
  longer than any Lambda runs: the next sync (at the latest the daily one) repairs the model. A
  restore is named after the model and its generation, not the clock, so its retry asks the
  provider for the same deployment (same request token) instead of creating a second one.
"""

from __future__ import annotations

import uuid
from typing import Any

from flywheel.dal import models as models_dal
from flywheel.dal.connection import transaction
from flywheel.errors import FlywheelError
from flywheel.observability import logger
from flywheel.settings import get_settings

# a claim outlives any sync that still runs: Lambda's maximum timeout is 900 s
CLAIM_S = 900
# provider calls for one model in one sync: retire, then restore if it became champion meanwhile
# (or restore, then retire if it was archived meanwhile), then one more; the rest is the next sync's
MAX_CALLS = 3


def sync(actor: str = "serving") -> dict[str, list[str]]:
    owner = f"{actor}:{uuid.uuid4().hex}"
    idle_s = _idle_grace()
    done: dict[str, list[str]] = {
        "retired": [],
        "restoring": [],
        "active": [],
        "failed": [],
        "errors": [],
        "busy": [],  # out of step, but another sync is acting on them
    }
    with transaction() as conn:
        candidates = models_dal.serving_out_of_step(conn, idle_s)
    for model_id in candidates:
        with transaction() as conn:  # claimed just before acting: the row as it is now
            model, holder = models_dal.claim_serving(conn, model_id, owner, CLAIM_S, idle_s)
        if model is None:
            if holder is not None:
                done["busy"].append(model_id)
            continue
        try:
            for _ in range(MAX_CALLS):
                _bring_in_step(model, owner, actor, done)
                # given back only in the transaction that finds it needs nothing more: a rollback that
                # committed since the last result was recorded saw the model claimed and left it to
                # this sync (its own sync skipped it as busy), so this sync acts on it again
                with transaction() as conn:
                    fresh = models_dal.claimed(conn, model_id, owner, idle_s)
                    if fresh is None or _next_call(fresh, {"poll"}) is None:
                        models_dal.release_claim(conn, model_id, owner)
                        break
                model = fresh
        except FlywheelError as exc:  # one model's trouble must not stop the others; retried next time
            logger.error("serving sync failed for a model", extra={"model_id": model_id, "error": exc.message})
            done["errors"].append(model_id)
        finally:  # a sync that failed gives the model back at once (a killed one, after CLAIM_S)
            with transaction() as conn:
                models_dal.release_claim(conn, model_id, owner)
    if any(done.values()):
        logger.info("serving synced", extra=done)
    return done


def _idle_grace() -> dict[str, float]:
    """How long a ready model keeps what serves it once its run has ended, by serving kind."""
    settings = get_settings()
    return {"provisioned": settings.serving_idle_provisioned_s, "on_demand": settings.serving_idle_on_demand_s}


def _next_call(model: dict[str, Any], called: set[str]) -> str | None:
    """What the row asks of the provider now: retire, serve, poll — or nothing. A deployment this
    sync has just created or polled is not polled again (it takes minutes to become active)."""
    if model["serving_status"] is None or model["serving_kind"] == "provider":
        return None
    if model["status"] in ("archived", "failed"):
        return "retire" if model["serving_status"] != "deleted" else None
    if model["status"] == "ready":  # serves no traffic; retired once idle past its grace period
        return "retire" if model.get("serving_idle") and model["serving_status"] != "deleted" else None
    if model["status"] != "deployed":
        return None
    if model["serving_status"] == "deleted":
        return "serve"
    if model["serving_status"] == "creating" and not called & {"serve", "poll"}:
        return "poll"
    return None


def _bring_in_step(model: dict[str, Any], owner: str, actor: str, done: dict[str, list[str]]) -> None:
    """Act on one claimed model until its row asks for nothing more (or MAX_CALLS)."""
    # the fine-tuning clients (and the secrets client under them) load here: every function that
    # reads experiments imports this module, and only a sync calls a provider
    from flywheel.clients.finetune import provider_for

    model_id = model["model_id"]
    idle_s = _idle_grace()
    called: set[str] = set()
    for _ in range(MAX_CALLS):
        call = _next_call(model, called)
        if call is None:
            return
        provider = provider_for(model["provider"], get_settings())
        acted_on = model["serving_model_id"]
        if call == "retire":
            provider.retire(acted_on, model["serving_kind"])
        elif call == "serve":
            served = provider.serve(
                model["provider_model_id"],
                # the model and its generation, not the clock: a retried restore gets the same
                # name and request token, so the provider answers with the deployment it made
                f"fw-{model_id}-r{model['serving_generation']}",
                {"model_id": model_id},
            )
        else:
            polled = provider.serving_status(acted_on, model["serving_kind"])
        called.add(call)
        with transaction() as conn:
            fresh = models_dal.claimed(conn, model_id, owner, idle_s)
            if fresh is None:  # our claim expired and another sync took the model: it acts now
                logger.warning(
                    "serving claim lost during a provider call",
                    extra={"model_id": model_id, "call": call, "serving_model_id": acted_on},
                )
                return
            if fresh["serving_model_id"] != acted_on:  # not the deployment we acted on: record nothing
                logger.warning(
                    "serving changed during a provider call; its result is not recorded",
                    extra={"model_id": model_id, "call": call, "acted_on": acted_on, "now": fresh["serving_model_id"]},
                )
                model = fresh
                continue
            if call == "retire":
                model = models_dal.change(
                    conn,
                    model_id,
                    "serving_retired",
                    actor=actor,
                    reason=(
                        f"{fresh['status']}: deployment deleted"
                        if fresh["status"] != "ready"
                        else f"ready, serving no traffic {_grace_text(fresh, idle_s)} after its run ended: "
                        "deployment deleted (created again when the model is deployed)"
                    ),
                    serving_status="deleted",
                    serving_generation=fresh["serving_generation"] + 1,
                )
                done["retired"].append(model_id)
            elif call == "serve":
                model = models_dal.change(
                    conn,
                    model_id,
                    "serving_restoring",
                    actor=actor,
                    reason="deployed again: deployment re-created",
                    serving_model_id=served.model_id,
                    serving_kind=served.kind,
                    serving_status=served.state,
                    serving_error=None,
                )
                done["restoring"].append(model_id)
            elif polled.state != "creating" and fresh["serving_status"] == "creating":
                model = models_dal.change(
                    conn,
                    model_id,
                    f"serving_{polled.state}",
                    actor=actor,
                    reason=polled.error or "deployment active",
                    serving_status=polled.state,
                    serving_error=polled.error,
                )
                done[polled.state].append(model_id)
            else:
                model = fresh
            models_dal.extend_claim(conn, model_id, owner, CLAIM_S)


def _grace_text(model: dict[str, Any], idle_s: dict[str, float]) -> str:
    seconds = int(idle_s["provisioned" if model["serving_kind"] == "provisioned" else "on_demand"])
    return f"{seconds // 3600} h" if seconds >= 3600 and seconds % 3600 == 0 else f"{seconds} s"
