"""Serving: keeping each registered model's inference endpoint in step with the registry.

A Bedrock custom model is invoked through an on-demand deployment (or provisioned throughput)
that costs money while it exists: archiving or failing a model deletes it, and restoring an
archived model (a rollback) creates it again. `sync` does both, after every registry change and
daily; it is idempotent, so a failed call is simply done by the next one.
"""

from __future__ import annotations

import time
from typing import Any

from flywheel.dal import models as models_dal
from flywheel.dal.connection import transaction
from flywheel.errors import FlywheelError
from flywheel.observability import logger
from flywheel.settings import get_settings


def sync(actor: str = "serving") -> dict[str, list[str]]:
    # the fine-tuning clients (and the secrets client under them) load here: every function that
    # reads experiments imports this module, and only a sync calls a provider
    from flywheel.clients.finetune import provider_for

    settings = get_settings()
    done: dict[str, list[str]] = {"retired": [], "restoring": [], "active": [], "failed": [], "errors": []}
    with transaction() as conn:
        rows = models_dal.serving_out_of_step(conn)
    for model in rows:
        try:
            provider = provider_for(model["provider"], settings)
            if model["status"] in ("archived", "failed"):
                provider.retire(model["serving_model_id"], model["serving_kind"])
                _record(
                    model, "serving_retired", actor, f"{model['status']}: deployment deleted", serving_status="deleted"
                )
                done["retired"].append(model["model_id"])
            elif model["serving_status"] == "deleted":
                # a new name (and so a new request token) for each restore: the old one may be taken
                serving = provider.serve(
                    model["provider_model_id"],
                    f"fw-{model['model_id']}-{int(time.time())}",
                    {"model_id": model["model_id"]},
                )
                _record(
                    model,
                    "serving_restoring",
                    actor,
                    "deployed again: deployment re-created",
                    serving_model_id=serving.model_id,
                    serving_status=serving.state,
                    serving_error=None,
                )
                done["restoring"].append(model["model_id"])
            else:  # creating: has it become active?
                serving = provider.serving_status(model["serving_model_id"], model["serving_kind"])
                if serving.state != "creating":
                    _record(
                        model,
                        f"serving_{serving.state}",
                        actor,
                        serving.error or "deployment active",
                        serving_status=serving.state,
                        serving_error=serving.error,
                    )
                    done[serving.state].append(model["model_id"])
        except FlywheelError as exc:  # one model's trouble must not stop the others; retried next time
            logger.error("serving sync failed for a model", extra={"model_id": model["model_id"], "error": exc.message})
            done["errors"].append(model["model_id"])
    if any(done.values()):
        logger.info("serving synced", extra=done)
    return done


def _record(model: dict[str, Any], action: str, actor: str, reason: str, **fields: Any) -> None:
    with transaction() as conn:
        models_dal.change(conn, model["model_id"], action, actor=actor, reason=reason, **fields)
