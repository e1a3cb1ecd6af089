"""Routing: which model writes to this lead (GET /route), sticky per experiment.

Kept apart from the experiment evaluator so that the busiest function imports neither NumPy nor
the statistics: a routing decision is a cached registry read plus, once per lead, an assignment.
"""

from __future__ import annotations

import time
from typing import Any

from flywheel.dal import experiments as experiments_dal
from flywheel.dal import models as models_dal
from flywheel.dal.connection import read_once, transaction
from flywheel.domain import routing
from flywheel.errors import NotFound

_SNAPSHOT: dict[str, Any] = {"at": 0.0}
SNAPSHOT_TTL_S = 30.0
_ASSIGNED: dict[tuple[str, str, str], str] = {}  # (experiment, org, lead) -> arm, per container
_ASSIGNED_MAX = 100_000


def _registry(now: float) -> dict[str, Any]:
    """Champion, challenger and running experiment, cached per container for a short TTL."""
    if now - _SNAPSHOT["at"] > SNAPSHOT_TTL_S:
        with transaction() as conn:
            _SNAPSHOT.update(
                at=now,
                champion=models_dal.by_role(conn, "champion"),
                challenger=models_dal.by_role(conn, "challenger"),
                experiment=experiments_dal.running(conn),
            )
    return _SNAPSHOT


def forget_cache() -> None:
    _SNAPSHOT["at"] = 0.0
    _ASSIGNED.clear()


def _model(row: dict[str, Any]) -> dict[str, Any]:
    """`serving_model_id` is what the generator passes as the model (a Bedrock deployment or
    provisioned-throughput ARN; an OpenAI fine-tune's name). It is null while a restored Bedrock
    model's deployment is being re-created: use your default model meanwhile."""
    serving = row.get("serving_model_id") if row.get("serving_status") == "active" else None
    if serving is None and row["provider"] != "bedrock" and row.get("serving_status") is None:
        serving = row["provider_model_id"]  # registered before serving was recorded
    return {
        "model_registry_id": row["model_id"],
        "provider": row["provider"],
        "provider_model_id": row["provider_model_id"],
        "serving_model_id": serving,
        "version": row["version"],
    }


def route(org_id: str, lead_id: str, *, fresh: bool = False) -> dict[str, Any]:
    """The model to write to this lead with, and the experiment arm, sticky for the experiment.
    A lead met first after its experiment ended (this container's snapshot is older) is routed
    again on a fresh snapshot, with nothing recorded."""
    if fresh:
        _SNAPSHOT["at"] = 0.0
    registry = _registry(time.monotonic())
    champion, challenger, experiment = registry["champion"], registry["challenger"], registry["experiment"]
    if champion is None:
        raise NotFound("no model is deployed yet: use your default model")
    if experiment is None or challenger is None or experiment["challenger_model_id"] != challenger["model_id"]:
        return {"model": _model(champion), "experiment_id": None, "arm": "champion"}
    key = (experiment["experiment_id"], org_id, lead_id)
    arm = _ASSIGNED.get(key)
    if arm is None:
        # read before write: an assigned lead costs one primary-key read, even in a cold container
        arm = read_once(lambda conn: experiments_dal.assigned_arm(conn, *key))
        if arm is None:
            value = routing.bucket(experiment["salt"], f"{org_id}:{lead_id}")
            wanted = routing.arm_for(value, float(experiment["allocation"]))
            with transaction() as conn:
                arm = experiments_dal.assign(conn, *key, wanted, value, experiment["stage"], experiment["segment"])
            if arm is None:  # the experiment ended since this container's snapshot
                if fresh:  # ended between the fresh snapshot and the assignment: no experiment now
                    return {"model": _model(champion), "experiment_id": None, "arm": "champion"}
                return route(org_id, lead_id, fresh=True)
        if len(_ASSIGNED) >= _ASSIGNED_MAX:
            _ASSIGNED.clear()
        _ASSIGNED[key] = arm
    return {
        "model": _model(challenger if arm == "challenger" else champion),
        "experiment_id": experiment["experiment_id"],
        "arm": arm,
    }
