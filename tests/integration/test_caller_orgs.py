"""API_CALLER_ORGS_JSON: an IAM caller may pass only the org_ids it is mapped to (README "Tenancy").

API Gateway's IAM authorisation sees the method and the resource path, never the query string or the
body, so it cannot keep acme's role from asking for globex: the functions do, in one place
(flywheel.api.check_caller_orgs). Every org-scoped operation of the OpenAPI document (found from the
document itself: an `org_id` query parameter, or an `org_id` anywhere in the body's schema) is called
for an organisation the caller is not mapped to and must answer 403 and write nothing; the platform
routes are for callers mapped to "*"; an unset mapping keeps every authenticated caller able to pass
any org_id. The check comes before validation: a malformed request from a caller without the right
to it is 403 too, never the 400/415/422 that would describe the route's inputs. Requests go through the local runner (its X-Flywheel-Principal header becomes
requestContext.identity.userArn, as API Gateway fills it in) and, for the deployed shape, straight to
the handlers with the sample events' assumed-role identities."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest

from flywheel.local.invoke import invoke, load_handler
from flywheel.local.openapi import build_document
from flywheel.local.server import PRINCIPAL_HEADER
from flywheel.local.template import read_template
from flywheel.services import experiments, training
from flywheel.settings import reset_settings
from tests.conftest import ROOT, ApiClient, count, load_event
from tests.integration.test_experiments import insert_models
from tests.webhook_helpers import configure

ACCOUNT = "123456789012"
# the mapping names acme's role with its IAM path; API Gateway passes the session ARN, which has none
ACME_ROLE = f"arn:aws:iam::{ACCOUNT}:role/senders/acme-sender"
ACME = f"arn:aws:sts::{ACCOUNT}:assumed-role/acme-sender/worker-7"
GLOBEX = f"arn:aws:iam::{ACCOUNT}:user/integrations/globex-backend"  # an IAM user: userArn has its path
PLATFORM = f"arn:aws:sts::{ACCOUNT}:assumed-role/platform-backend/ops"
CALLER_ORGS = {
    ACME_ROLE: ["acme"],
    f"arn:aws:iam::{ACCOUNT}:user/globex-backend": ["globex"],
    f"arn:aws:iam::{ACCOUNT}:role/platform-backend": ["*"],
}
OTHER = {"acme": "globex", "globex": "acme"}
CALLER_OF = {"acme": ACME, "globex": GLOBEX}
# the operations the README's Tenancy paragraph lists: the document must find at least these
KNOWN_ORG_SCOPED = {
    "GET /messages/{outcome_id}",
    "GET /quarantine",
    "GET /suppressions",
    "GET /route",
    "GET /insights/strategies",
    "GET /training/leaderboard",
    "GET /campaigns/{campaign_id}/performance",
    "GET /reports/latest",
    "GET /training/stats",
    "POST /messages",
    "POST /replies",
    "POST /outcomes/{outcome_id}/corrections",
}
ZERO = "00000000-0000-4000-8000-000000000000"


def as_caller(principal: str | None) -> dict[str, str]:
    return {PRINCIPAL_HEADER: principal} if principal else {}


def message(org: str, i: int) -> dict[str, Any]:
    return {
        "org_id": org,
        "campaign_id": f"{org}-camp",
        "lead_id": f"{org}-lead-{i}",
        "lead_email": f"lead{i}@{org}-customer.example",
        "body": f"{org} pitch {i}",
        "sent_at": "2026-11-20T09:00:00Z",
        "idempotency_key": f"{org}-{i}",
    }


# a valid body for every POST operation (a refused caller is refused before validation, but an
# allowed one must reach the handler): a new POST route fails test_every_org_scoped_operation...
# until it is given one here
BODIES: dict[str, Callable[[str, dict[str, str]], Any]] = {
    "POST /messages": lambda org, ids: message(org, 99),
    "POST /replies": lambda org, ids: {
        "outcome_id": ids[org],
        "channel": "linkedin",
        "external_id": f"li-{org}-1",
        "text": "Thanks, not interested for now.",
        "occurred_at": "2026-11-25T16:20:00Z",
    },
    "POST /outcomes/{outcome_id}/corrections": lambda org, ids: {
        "reply_category": "not_interested",
        "reason": "reads as a polite no",
        "actor": "ops@example.com",
        "correction_id": f"corr-{org}-1",
    },
    "POST /training/run": lambda org, ids: {"wait_seconds": 0},
    "POST /training/deploy/{model_id}": lambda org, ids: {"reason": "deploy it now"},
    "POST /training/archive/{model_id}": lambda org, ids: {"reason": "archive it now"},
    "POST /training/rollback": lambda org, ids: {"reason": "roll it back"},
    "POST /training/promote-winner": lambda org, ids: {"reason": "promote the winner"},
    "POST /experiments/{experiment_id}/restart": lambda org, ids: {"reason": "restart the stage"},
}


def _mentions_org_id(node: Any, document: dict[str, Any], seen: frozenset[str] = frozenset()) -> bool:
    """Whether a schema (following $refs) has an `org_id` property anywhere."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            target: Any = document
            for part in ref.lstrip("#/").split("/"):
                target = target[part]
            if _mentions_org_id(target, document, seen | {ref}):
                return True
        if "org_id" in (node.get("properties") or {}):
            return True
        return any(_mentions_org_id(v, document, seen) for k, v in node.items() if k != "$ref")
    if isinstance(node, list):
        return any(_mentions_org_id(v, document, seen) for v in node)
    return False


def iam_operations() -> list[tuple[str, str, dict[str, Any], str | None]]:
    """(method, path, operation, where it names an org: "query", "body" or None) of every IAM route
    but the health checks."""
    document = build_document(ROOT / "template.yaml")
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not operation.get("security") or path.startswith("/health"):
                continue
            params = {p["name"]: p["in"] for p in operation.get("parameters", [])}
            if params.get("org_id") == "query":
                where: str | None = "query"
            elif _mentions_org_id(operation.get("requestBody"), document):
                where = "body"
            else:
                where = None
            found.append((method.upper(), path, operation, where))
    return found


def call(
    api: ApiClient, method: str, path: str, where: str | None, org: str, ids: dict[str, str], principal: str | None
) -> tuple[int, Any]:
    concrete = (
        path.replace("{outcome_id}", ids.get(org, ZERO))
        .replace("{campaign_id}", f"{org}-camp")
        .replace("{run_id}", ZERO)
        .replace("{job_id}", "job-1")
        .replace("{model_id}", "flywheel-v9.9.9")
        .replace("{experiment_id}", "exp-none")
    )
    query = {"org_id": org} if where == "query" else {}
    if path == "/route":
        query["lead_id"] = f"{org}-lead-0"
    url = f"{concrete}?{urlencode(query)}" if query else concrete
    key = f"{method} {path}"
    if method == "GET":
        return api.get(url, headers=as_caller(principal))
    assert key in BODIES, f"{key}: add a valid body to BODIES"
    return api.post(url, BODIES[key](org, ids), headers=as_caller(principal))


def row_counts(db: psycopg.Connection[dict[str, Any]]) -> dict[str, int]:
    """The number of rows of every table: what a refused request must leave as it was."""
    tables = [
        r["tablename"] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    ]
    return {t: count(db, t) for t in tables}


def scalar(db: psycopg.Connection[dict[str, Any]], query: str) -> int:
    row = db.execute(query).fetchone()  # type: ignore[arg-type]  # a literal query of the test
    assert row is not None
    return int(row["n"])


def register(api: ApiClient, principal: str | None) -> dict[str, str]:
    """Two organisations' messages; the first outcome id of each."""
    ids = {}
    for org in ("acme", "globex"):
        status, body = api.post(
            "/messages", {"messages": [message(org, i) for i in range(3)]}, headers=as_caller(principal)
        )
        assert status == 201, body
        ids[org] = body["outcomes"][0]["outcome_id"]
    return ids


@pytest.fixture
def scoped(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, API_CALLER_ORGS_JSON=json.dumps(CALLER_ORGS))


@pytest.fixture
def experiment(db: psycopg.Connection[dict[str, Any]]) -> Any:
    """A champion and a challenger in an experiment: GET /route answers 200 and records each lead's arm."""
    insert_models(db)
    training.deploy_model("flywheel-v1.0.0", canary_percentage=10, actor="test", reason="first model")
    training.deploy_model("flywheel-v1.1.0", canary_percentage=50, actor="test", reason="weekly run")
    experiments.forget_cache()
    yield
    experiments.forget_cache()


def test_the_document_names_every_org_scoped_operation() -> None:
    scoped_ops = {f"{m} {p}" for m, p, _, where in iam_operations() if where}
    assert scoped_ops >= KNOWN_ORG_SCOPED, KNOWN_ORG_SCOPED - scoped_ops
    assert {f"{m} {p}" for m, p, _, where in iam_operations() if where == "body"} == {"POST /messages"}


def test_every_org_scoped_operation_refuses_an_org_the_caller_is_not_mapped_to(
    api: ApiClient, db: psycopg.Connection[dict[str, Any]], scoped: None, experiment: None
) -> None:
    ids = register(api, PLATFORM)
    operations = [(m, p, where) for m, p, _, where in iam_operations() if where]
    before = row_counts(db)
    for method, path, where in operations:
        for org in ("acme", "globex"):
            # acme's session asks for globex, globex's IAM user for acme: refused, whatever the route
            status, body = call(api, method, path, where, OTHER[org], ids, CALLER_OF[org])
            assert status == 403, (method, path, org, status, body)
            assert body["error"] == "forbidden" and OTHER[org] in body["message"], body
    assert row_counts(db) == before  # nothing written: no outcome, reply, correction, assignment

    for method, path, where in operations:
        for org, principal in (("acme", ACME), ("globex", GLOBEX), ("globex", PLATFORM)):
            status, body = call(api, method, path, where, org, ids, principal)
            assert status != 403 and status < 500 or status == 503, (method, path, org, status, body)
    # the allowed calls reached their handlers (what they answer then is theirs: 503 without the
    # replies queue, 409 for a correction of an outcome with no reply); the registrations and the
    # routing assignments were written
    after = row_counts(db)
    assert after["outcome_labels"] == before["outcome_labels"] + 2
    assert after["assignments"] == before["assignments"] + 2


def test_a_batch_naming_one_foreign_org_is_refused_whole(
    api: ApiClient, db: psycopg.Connection[dict[str, Any]], scoped: None
) -> None:
    batch = {"messages": [message("acme", 1), message("acme", 2), message("globex", 3)]}
    status, body = api.post("/messages", batch, headers=as_caller(ACME))
    assert status == 403 and body["error"] == "forbidden", body
    assert "globex" in body["message"] and "acme-sender" in body["message"]
    assert count(db, "outcome_labels") == 0
    # a single message (not a batch) is checked the same way
    status, _ = api.post("/messages", message("globex", 4), headers=as_caller(ACME))
    assert status == 403
    status, body = api.post("/messages", batch, headers=as_caller(PLATFORM))
    assert status == 201 and len(body["outcomes"]) == 3, body
    status, body = api.post("/messages", {"messages": [message("acme", 5)]}, headers=as_caller(ACME))
    assert status == 201, body


def test_the_platform_routes_are_for_callers_mapped_to_every_organisation(
    api: ApiClient, db: psycopg.Connection[dict[str, Any]], scoped: None
) -> None:
    platform = [(m, p) for m, p, _, where in iam_operations() if where is None]
    assert {"GET /training/models", "POST /training/run", "GET /experiments"} <= {f"{m} {p}" for m, p in platform}
    before = row_counts(db)
    for method, path in platform:
        status, body = call(api, method, path, None, "acme", {}, ACME)
        assert status == 403 and "platform routes" in body["message"], (method, path, status, body)
    assert row_counts(db) == before
    for method, path in platform:
        if method == "GET":  # the platform's caller passes (what the route answers then is its own)
            status, body = call(api, method, path, None, "acme", {}, PLATFORM)
            assert status != 403 and (status < 500 or status == 503), (path, status, body)
    # the deep health checks name no organisation: every authenticated caller, and they say scoping is on
    for function in ("messages", "replies", "reports", "routing", "training"):
        status, body = api.get(f"/health/{function}/deep", headers=as_caller(ACME))
        assert status == 200 and body["checks"]["settings"]["org_scoping"] == "on", body
        assert body["checks"]["settings"]["api_callers"] == 3
        assert "acme" not in json.dumps(body)
    status, body = api.get("/health/webhooks/deep")
    assert status == 200 and "org_scoping" not in body["checks"]["settings"], body


@pytest.mark.parametrize(
    "principal",
    [
        None,  # no identity at all
        f"arn:aws:sts::{ACCOUNT}:assumed-role/acme-reader/worker-7",  # a role nobody mapped
        "arn:aws:sts::999999999999:assumed-role/acme-sender/worker-7",  # acme-sender of another account
        f"arn:aws:iam::{ACCOUNT}:root",  # the account's root
        f"arn:aws:sts::{ACCOUNT}:federated-user/acme-sender",
    ],
)
def test_a_caller_the_mapping_does_not_name_may_act_for_no_organisation(
    api: ApiClient, db: psycopg.Connection[dict[str, Any]], scoped: None, experiment: None, principal: str | None
) -> None:
    status, body = api.post("/messages", message("acme", 1), headers=as_caller(principal))
    assert status == 403 and body["error"] == "forbidden", body
    status, body = api.get("/route?org_id=acme&lead_id=acme-lead-1", headers=as_caller(principal))
    assert status == 403, body
    assert row_counts(db)["outcome_labels"] == 0 and row_counts(db)["assignments"] == 0


def test_the_deployed_event_shape_assumed_role_and_no_header_power(
    db: psycopg.Connection[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, experiment: None
) -> None:
    """Straight to the handler with the sample event, as API Gateway invokes it: requestContext.identity
    .userArn is arn:aws:sts::123456789012:assumed-role/sender/x, mapped through its role's ARN."""
    configure(monkeypatch, API_CALLER_ORGS_JSON=json.dumps({f"arn:aws:iam::{ACCOUNT}:role/sender": ["acme"]}))
    event = load_event("route_get.json")
    assert event["requestContext"]["identity"]["userArn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/sender/x"
    assert invoke("RoutingFunction", event, ROOT / "template.yaml")["statusCode"] == 200

    foreign = json.loads(json.dumps(event))
    foreign["queryStringParameters"]["org_id"] = "globex"
    foreign["multiValueQueryStringParameters"]["org_id"] = ["globex"]
    # in AWS the local runner's header is only a header: it cannot make the caller someone else
    foreign["headers"][PRINCIPAL_HEADER] = PLATFORM
    foreign["multiValueHeaders"][PRINCIPAL_HEADER] = [PLATFORM]
    answer = invoke("RoutingFunction", foreign, ROOT / "template.yaml")
    assert answer["statusCode"] == 403 and json.loads(answer["body"])["error"] == "forbidden", answer
    assert scalar(db, "SELECT count(*) AS n FROM assignments WHERE org_id = 'globex'") == 0

    # a path the function serves no route for is its 404, whoever asks
    stray = json.loads(json.dumps(event))
    stray["path"] = stray["resource"] = stray["requestContext"]["resourcePath"] = "/route/nowhere"
    answer = invoke("RoutingFunction", stray, ROOT / "template.yaml")
    assert answer["statusCode"] == 404 and json.loads(answer["body"])["error"] == "not_found", answer

    batch = load_event("messages_register_batch.json")
    orgs = {m["org_id"] for m in json.loads(batch["body"])["messages"]}
    assert orgs == {"acme"}
    assert invoke("MessagesFunction", batch, ROOT / "template.yaml")["statusCode"] == 201
    body = json.loads(batch["body"])
    body["messages"][-1]["org_id"] = "globex"
    batch["body"] = json.dumps(body)
    before = count(db, "outcome_labels")
    assert invoke("MessagesFunction", batch, ROOT / "template.yaml")["statusCode"] == 403
    assert count(db, "outcome_labels") == before


@pytest.mark.parametrize("setting", [None, "", "{}"])
def test_without_a_mapping_every_authenticated_caller_may_pass_any_org(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch, experiment: None, setting: str | None
) -> None:
    configure(monkeypatch)
    if setting is None:
        monkeypatch.delenv("API_CALLER_ORGS_JSON", raising=False)
    else:
        monkeypatch.setenv("API_CALLER_ORGS_JSON", setting)
    reset_settings()
    ids = register(api, None)  # no principal at all, as `flywheel start-api --no-auth` and before
    for org in ("acme", "globex"):
        status, body = api.get(f"/messages/{ids[org]}?org_id={org}")
        assert status == 200, body
        assert api.get(f"/route?org_id={org}&lead_id={org}-lead-0", headers=as_caller(ACME))[0] == 200
    assert api.get("/training/models", headers=as_caller(ACME))[0] == 200
    status, body = api.get("/health/messages/deep")
    assert status == 200 and body["checks"]["settings"]["org_scoping"] == "off", body


def test_every_iam_function_reads_the_mapping_and_only_webhooks_are_public() -> None:
    """The template gives API_CALLER_ORGS_JSON to every function serving an IAM route (besides its
    health check), from the ApiCallerOrgs parameter; a function whose resolver skips the check
    (`public`) serves public routes only."""
    template = read_template(ROOT / "template.yaml")
    assert template.parameter_defaults()["ApiCallerOrgs"] == ""
    for logical_id, spec in template.functions().items():
        if not spec.routes:
            continue
        iam = [r for r in spec.routes if r.auth == "AWS_IAM" and not r.path.startswith("/health")]
        app = inspect.unwrap(load_handler(spec)).__globals__["app"]
        if iam:
            assert spec.raw_environment.get("API_CALLER_ORGS_JSON") == {"Ref": "ApiCallerOrgs"}, logical_id
            assert not app.public, logical_id
        else:
            assert app.public, logical_id


# --- configuration mistakes (re-review) and probes that held up ---------------------------------


def test_a_mapping_only_the_settings_can_refuse_answers_503_naming_the_variable(
    db: psycopg.Connection[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One role named with and without its path passes the AllowedPattern (no pattern compares keys)
    and deploys: every IAM route then answers 503 configuration_error with Retry-After, naming the
    variable and never a key, and the deep health check says which setting fails."""
    value = json.dumps(
        {f"arn:aws:iam::{ACCOUNT}:role/sender": ["acme"], f"arn:aws:iam::{ACCOUNT}:role/ops/sender": ["*"]}
    )
    parameter = read_template(ROOT / "template.yaml").body["Parameters"]["ApiCallerOrgs"]
    assert re.fullmatch(parameter["AllowedPattern"], value)
    configure(monkeypatch, API_CALLER_ORGS_JSON=value)
    answer = invoke("RoutingFunction", load_event("route_get.json"), ROOT / "template.yaml")
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 503 and answer["multiValueHeaders"]["Retry-After"] == ["30"], answer
    assert body == {"error": "configuration_error", "message": "invalid configuration: API_CALLER_ORGS_JSON"}
    assert count(db, "assignments") == 0
    deep = load_event("route_get.json")
    deep["path"] = deep["resource"] = deep["requestContext"]["resourcePath"] = "/health/routing/deep"
    deep["queryStringParameters"] = deep["multiValueQueryStringParameters"] = None
    answer = invoke("RoutingFunction", deep, ROOT / "template.yaml")
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 503 and body["message"] == "failing: settings (API_CALLER_ORGS_JSON)", body
    assert "keys 1 and 2 name the same principal" in body["checks"]["settings"]["invalid"]["API_CALLER_ORGS_JSON"]
    assert "sender" not in json.dumps(body).replace("same principal", "")


def test_a_key_in_another_case_is_the_same_role(
    api: ApiClient, db: psycopg.Connection[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """IAM cannot hold `Acme-Sender` beside `acme-sender`: a key written in another case than the
    role's session ARN is that role, for its organisations and no other."""
    configure(
        monkeypatch, API_CALLER_ORGS_JSON=json.dumps({f"arn:aws:iam::{ACCOUNT}:role/Senders/ACME-Sender": ["acme"]})
    )
    status, body = api.post("/messages", message("acme", 1), headers=as_caller(ACME))
    assert status == 201, body
    shouting = f"arn:aws:sts::{ACCOUNT}:assumed-role/ACME-SENDER/worker-7"
    status, body = api.post("/messages", message("acme", 2), headers=as_caller(shouting))
    assert status == 201, body
    status, body = api.post("/messages", message("globex", 3), headers=as_caller(shouting))
    assert status == 403 and "organisation globex" in body["message"], body
    assert scalar(db, "SELECT count(*) AS n FROM outcome_labels WHERE org_id = 'globex'") == 0


def test_query_string_tricks_never_reach_another_organisation(
    api: ApiClient, db: psycopg.Connection[dict[str, Any]], scoped: None
) -> None:
    """Repeated, re-cased, encoded, padded org_id parameters: acme's caller never reads or writes
    globex's rows (a probe of the re-review that held up)."""
    globex = register(api, PLATFORM)["globex"]
    before = row_counts(db)
    for url in (
        "/suppressions?org_id=acme&org_id=globex",
        "/suppressions?org_id=globex&org_id=acme",
        f"/messages/{globex}?org_id=acme&org_id=globex",
        f"/messages/{globex}?org_id=globex&ORG_ID=acme",
        f"/messages/{globex}?ORG_ID=globex&org_id=acme",
        f"/messages/{globex}?org_id=glob%65x",
        f"/messages/{globex}?org_id=globex%20",
        f"/messages/{globex}?org_id=%20globex",
        f"/messages/{globex}?org_id=GLOBEX",
        f"/messages/{globex}?org_id=globex%0a",
        f"/messages/{globex}?org_id=acme,globex",
        f"/messages/{globex}?org_id=acme",  # globex's outcome under acme: not found
        "/route?org_id=acme&org_id=globex&lead_id=x",
        "/reports/latest?org_id=acme&org_id=globex",
    ):
        status, body = api.get(url, headers=as_caller(ACME))
        assert status in (403, 404, 422), (url, status, body)
        assert "globex-camp" not in json.dumps(body), (url, body)
    status, body = api.post(
        f"/outcomes/{globex}/corrections?org_id=acme",
        {"training_label": "negative", "reason": "x", "actor": "a@x"},
        headers=as_caller(ACME),
    )
    assert status == 404, body
    assert row_counts(db) == before


def test_single_and_multi_value_query_parameters_that_disagree(
    db: psycopg.Connection[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, experiment: None
) -> None:
    """queryStringParameters says globex, multiValueQueryStringParameters acme: the check before
    validation reads every value of both (globex is named: 403), and the check after it reads the
    same validated value as the handler, so globex is never acted for."""
    configure(monkeypatch, API_CALLER_ORGS_JSON=json.dumps({f"arn:aws:iam::{ACCOUNT}:role/sender": ["acme"]}))
    event = load_event("route_get.json")
    event["queryStringParameters"]["org_id"] = "globex"
    answer = invoke("RoutingFunction", event, ROOT / "template.yaml")
    assert answer["statusCode"] == 403, answer
    assert scalar(db, "SELECT count(*) AS n FROM assignments WHERE org_id = 'globex'") == 0
    event = load_event("route_get.json")
    event["multiValueQueryStringParameters"]["org_id"] = ["acme", "globex"]
    answer = invoke("RoutingFunction", event, ROOT / "template.yaml")
    assert answer["statusCode"] in (403, 422), answer
    assert scalar(db, "SELECT count(*) AS n FROM assignments WHERE org_id = 'globex'") == 0


@pytest.mark.parametrize(
    "user_arn",
    [
        None,
        "",
        f"arn:aws:sts::{ACCOUNT}:assumed-role/acme-sender",  # no session
        f"arn:aws:sts::{ACCOUNT}:assumed-role/acme-sender/a/b",
        f"arn:aws:sts::{ACCOUNT}:federated-user/acme-sender",
        f"arn:aws:iam::{ACCOUNT}:root",
        f"arn:aws-us-gov:sts::{ACCOUNT}:assumed-role/acme-sender/x",  # another partition
        f" arn:aws:sts::{ACCOUNT}:assumed-role/acme-sender/x",
        f"arn:aws:sts::{ACCOUNT}:assumed-role/acme-sender/x\n",  # Python's `$` took it; fullmatch does not
    ],
)
def test_identity_forms_that_are_not_acme_sender(
    db: psycopg.Connection[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, user_arn: str | None
) -> None:
    configure(monkeypatch, API_CALLER_ORGS_JSON=json.dumps(CALLER_ORGS))
    batch = load_event("messages_register_batch.json")
    batch["requestContext"]["identity"]["userArn"] = user_arn
    answer = invoke("MessagesFunction", batch, ROOT / "template.yaml")
    assert answer["statusCode"] == 403, (user_arn, answer)
    assert count(db, "outcome_labels") == 0


# --- authorisation before validation --------------------------------------------------------------

UNMAPPED = f"arn:aws:sts::{ACCOUNT}:assumed-role/acme-reader/worker-7"  # a role nobody mapped
# every query parameter a route of the API validates, each malformed (a route ignores the others)
BAD_QUERY = {
    "limit": "0",
    "since": "yesterday",
    "cursor": "!!",
    "min_quality_score": "7",
    "since_days": "0",
    "segment": "zodiac",
    "min_sample": "-1",
    "snapshots": "maybe",
    "status": "bogus",
}


def malformed_calls(path: str, where: str | None, org: str | None) -> list[tuple[str, bytes | None, dict[str, str]]]:
    """(url, body, headers) of malformed requests to one operation, each naming `org` where the
    operation reads an org_id (and it is readable): a bad path parameter, bad query parameters, a
    required one missing (/route's lead_id), and for a POST a body of the wrong shape, one that
    is not JSON, one that is not UTF-8, and one that says it is text."""
    concrete = (
        path.replace("{outcome_id}", "not-a-uuid")
        .replace("{run_id}", "not-a-uuid")
        .replace("{campaign_id}", "%20bad%20")
        .replace("{job_id}", "-job")
        .replace("{model_id}", "-model")
        .replace("{experiment_id}", "exp-none")
    )
    query = dict(BAD_QUERY)
    if where == "query" and org is not None:
        query["org_id"] = org
    url = f"{concrete}?{urlencode(query)}"
    json_type = {"Content-Type": "application/json"}
    if where == "body":
        assert path == "/messages"
        named = org or "acme"
        wrong_shape = {"messages": [{"org_id": named, "lead_email": "not an email", "sent_at": "soon", "body": ""}, 5]}
        return [
            (url, json.dumps(wrong_shape).encode(), json_type),
            (url, json.dumps({"org_id": named, "campaign_id": 7}).encode(), json_type),
            (url, json.dumps({"org_id": named}).encode(), {"Content-Type": "text/plain"}),
        ]
    return [
        (url, None, {}),
        (url, json.dumps({"reason": 5, "wait_seconds": "x", "canary_percentage": 500}).encode(), json_type),
        (url, b'{"reason": ', json_type),
        (url, b'{"reason": "\xff"}', json_type),
        (url, b"reason=x", {"Content-Type": "text/plain"}),
    ]


def test_an_unauthorised_caller_is_refused_before_its_request_is_validated(
    api: ApiClient, db: psycopg.Connection[dict[str, Any]], scoped: None
) -> None:
    """Authorisation comes before input validation, as in API Gateway's IAM authoriser: a caller
    without the right to a route's organisation (or to a platform route) gets 403, never the 422 /
    400 / 415 that would tell it how the route validates its input. Every IAM operation of the
    document, called malformed (a) by a principal the mapping does not name, (b) by acme's role for
    globex (or, on a platform route, for the platform): 403 JSON, nothing written."""
    operations = [(m, p, where) for m, p, _, where in iam_operations()]
    assert {where for _, _, where in operations} == {"query", "body", None}
    before = row_counts(db)
    refused = 0
    for method, path, where in operations:
        for principal, org in ((UNMAPPED, "acme"), (UNMAPPED, None), (ACME, "globex")):
            if principal == ACME and where is not None and org is None:
                continue
            for url, body, headers in malformed_calls(path, where, org):
                status, answer, out = api.request(
                    method, url, body=body or b"", headers={**headers, **as_caller(principal)}
                )
                assert status == 403, (method, url, principal, body, status, answer)
                assert out["Content-Type"] == ["application/json"] and answer["error"] == "forbidden", answer
                if principal == UNMAPPED:
                    assert "may act for no organisation" in answer["message"], answer
                elif where is None:
                    assert "platform routes" in answer["message"], answer
                else:
                    assert answer["message"].endswith("may not act for organisation globex"), answer
                refused += 1
    assert refused > 100
    assert row_counts(db) == before


def test_a_mapped_caller_naming_only_its_own_organisations_gets_the_validation_answer(
    api: ApiClient, db: psycopg.Connection[dict[str, Any]], scoped: None
) -> None:
    """What acme's own caller sends wrong is answered as before (it may call the route, so the
    answer tells it nothing it may not know): a body that cannot be read names no organisation (400,
    415), an org_id missing or not a string is validation's (422); one foreign org_id readable
    anywhere the model has one refuses the request (403) however malformed the rest; an `org_id`
    key in a free-form field (`agent_decisions`, `lead.extra`) names no organisation."""
    cases: list[tuple[str, bytes, dict[str, str], int]] = [
        ("/messages", b'{"org_id": "globex", ', {}, 400),
        ("/messages", json.dumps({"org_id": "globex"}).encode(), {"Content-Type": "text/plain"}, 403),
        ("/messages", json.dumps({"org_id": "acme"}).encode(), {"Content-Type": "text/plain"}, 415),
        ("/messages", json.dumps({"org_id": "acme", "campaign_id": 7}).encode(), {}, 422),
        ("/messages", json.dumps({"campaign_id": "c", "lead_id": "l", "body": "b"}).encode(), {}, 422),
        ("/messages", json.dumps({"org_id": ["globex"], "campaign_id": "c"}).encode(), {}, 422),
        ("/messages", json.dumps({"messages": [message("acme", 1), {"org_id": "globex"}]}).encode(), {}, 403),
        ("/messages", json.dumps({"messages": [message("acme", 1), {"org_id": "acme "}]}).encode(), {}, 422),
        ("/messages", json.dumps({"messages": [message("acme", 1), {"org_id": " globex"}]}).encode(), {}, 403),
        ("/messages", json.dumps({"messages": [{"org_id": "acme", "lead_email": "x"}]}).encode(), {}, 422),
        ("/suppressions?org_id=acme&limit=0", b"", {}, 422),
        ("/suppressions?limit=0", b"", {}, 422),
        ("/suppressions?org_id=globex&limit=0", b"", {}, 403),
        ("/suppressions?org_id=acme&org_id=globex&limit=0", b"", {}, 403),
    ]
    before = row_counts(db)
    for url, body, headers, expected in cases:
        method = "POST" if url == "/messages" else "GET"
        status, answer, _ = api.request(
            method, url, body=body, headers={"Content-Type": "application/json", **headers, **as_caller(ACME)}
        )
        assert status == expected, (url, body, status, answer)
        assert (
            answer["error"]
            == {
                400: "malformed_json",
                403: "forbidden",
                415: "unsupported_media_type",
                422: "validation_error",
            }[expected]
        )
    assert row_counts(db) == before
    planted = message("acme", 2)
    planted["agent_decisions"] = {"org_id": "globex", "why": "a sender's own note"}
    planted["lead"] = {"extra": {"org_id": "globex"}}
    status, answer = api.post("/messages", planted, headers=as_caller(ACME))
    assert status == 201, answer
    assert scalar(db, "SELECT count(*) AS n FROM outcome_labels WHERE org_id = 'acme'") == 1


@pytest.mark.parametrize("padded", [" acme", "acme ", "acme\n", "\tacme"])
def test_an_own_org_id_with_surrounding_whitespace_is_read_as_validation_reads_it(
    api: ApiClient, db: psycopg.Connection[dict[str, Any]], scoped: None, padded: str
) -> None:
    """A message's org_id is stripped by validation (" acme" is stored as acme, as with the mapping
    off): the check before validation compares it the same way, so acme's caller is not refused its
    own organisation (it was 403 'may not act for organisation " acme"'), and globex's id padded
    the same way is still refused, nothing written."""
    status, body = api.post("/messages", dict(message("acme", 1), org_id=padded), headers=as_caller(ACME))
    assert status == 201, body
    assert [r["org_id"] for r in db.execute("SELECT org_id FROM outcome_labels")] == ["acme"]
    status, body = api.post(
        "/messages", dict(message("acme", 2), org_id=padded.replace("acme", "globex")), headers=as_caller(ACME)
    )
    assert status == 403 and "acme-sender may not act for organisation " in body["message"], body
    assert count(db, "outcome_labels") == 1


# path parameters API Gateway matches but Powertools' route pattern does not take: its not-found route
UNROUTABLE = ['a"b', "a\\b", "a`b", "\U0001f600"]


def _direct(event: dict[str, Any], path: str, params: dict[str, str], principal: str | None) -> dict[str, Any]:
    """`event` as API Gateway sends it for `path` with `params` (its resource unchanged), by `principal`."""
    event = json.loads(json.dumps(event))
    event["path"] = event["requestContext"]["path"] = path
    event["pathParameters"] = params
    event["requestContext"]["identity"]["userArn"] = principal
    return event


@pytest.mark.parametrize("value", UNROUTABLE)
def test_a_path_parameter_the_router_cannot_match_is_checked_before_its_404(
    db: psycopg.Connection[dict[str, Any]], scoped: None, value: str
) -> None:
    """API Gateway matched /messages/{outcome_id} (and authorised it), but Powertools' route pattern
    does not take a quote, a backslash, a backtick or an emoji, so the request reached the
    not-found handler, which skipped the caller check: 404 "no such route" for a caller the mapping
    does not name (README: 403 whatever it sent). The route of the event's resource is checked:
    403 for an unmapped caller, for acme's caller naming globex, and for acme's on a platform route;
    acme's own request keeps its 404; the health checks stay open to every caller."""
    template = ROOT / "template.yaml"
    get = load_event("messages_get.json")
    assert get["resource"] == "/messages/{outcome_id}"

    def answer(function: str, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        result = invoke(function, event, template)
        return result["statusCode"], json.loads(result["body"])

    status, body = answer("MessagesFunction", _direct(get, f"/messages/{value}", {"outcome_id": value}, UNMAPPED))
    assert (status, body["error"]) == (403, "forbidden") and "may act for no organisation" in body["message"], body
    foreign = _direct(get, f"/messages/{value}", {"outcome_id": value}, ACME)
    foreign["queryStringParameters"] = {"org_id": "globex"}
    foreign["multiValueQueryStringParameters"] = {"org_id": ["globex"]}
    status, body = answer("MessagesFunction", foreign)
    assert status == 403 and body["message"].endswith("may not act for organisation globex"), body
    own = _direct(get, f"/messages/{value}", {"outcome_id": value}, ACME)
    own["queryStringParameters"], own["multiValueQueryStringParameters"] = {"org_id": "acme"}, {"org_id": ["acme"]}
    assert answer("MessagesFunction", own) == (404, {"error": "not_found", "message": "no such route"})

    run = _direct(get, f"/training/runs/{value}", {"run_id": value}, ACME)
    run["resource"] = run["requestContext"]["resourcePath"] = "/training/runs/{run_id}"
    run["queryStringParameters"] = run["multiValueQueryStringParameters"] = None
    status, body = answer("TrainingApiFunction", run)
    assert status == 403 and "platform routes" in body["message"], body
    run["requestContext"]["identity"]["userArn"] = PLATFORM
    assert answer("TrainingApiFunction", run) == (404, {"error": "not_found", "message": "no such route"})

    deep = _direct(get, f"/health/{value}/deep", {"component": value}, UNMAPPED)
    deep["resource"] = deep["requestContext"]["resourcePath"] = "/health/{component}/deep"
    deep["queryStringParameters"] = deep["multiValueQueryStringParameters"] = None
    assert answer("MessagesFunction", deep)[0] == 404
    assert count(db, "outcome_labels") == 0


def test_a_resource_the_function_does_not_serve_is_403_for_an_unmapped_caller_only(
    db: psycopg.Connection[dict[str, Any]], scoped: None
) -> None:
    """API Gateway never sends a function a resource it does not serve; sent one anyway, the
    function refuses a caller the mapping does not name (403 whatever it sent) and answers any
    other caller its 404."""
    stray = _direct(load_event("messages_get.json"), "/nowhere/x", {"id": "x"}, UNMAPPED)
    stray["resource"] = stray["requestContext"]["resourcePath"] = "/nowhere/{id}"
    result = invoke("MessagesFunction", stray, ROOT / "template.yaml")
    assert result["statusCode"] == 403 and json.loads(result["body"])["error"] == "forbidden", result
    stray["requestContext"]["identity"]["userArn"] = ACME
    result = invoke("MessagesFunction", stray, ROOT / "template.yaml")
    assert result["statusCode"] == 404 and json.loads(result["body"])["error"] == "not_found", result


@pytest.mark.parametrize(
    "media",
    ["Application/JSON", "APPLICATION/JSON; charset=utf-8", "application/vnd.flywheel+json", "application/JSON"],
)
def test_a_json_media_type_is_json_whatever_its_case_and_structured_suffix(
    api: ApiClient, db: psycopg.Connection[dict[str, Any]], scoped: None, media: str
) -> None:
    """Media types are case-insensitive (RFC 9110 8.3.1) and `application/<type>+json` is JSON:
    Powertools compared the Content-Type with "application/json" case-sensitively and answered
    415 for a well-formed message (and never parsed a +json body as JSON). Another type is still 415."""
    body = json.dumps(message("acme", 1)).encode()
    status, answer, _ = api.request("POST", "/messages", body=body, headers={**as_caller(ACME), "Content-Type": media})
    assert status == 201, answer
    assert count(db, "outcome_labels") == 1
    for other in ("text/plain", "application/jsonx", "text/json"):
        status, answer, _ = api.request(
            "POST", "/messages", body=body, headers={**as_caller(ACME), "Content-Type": other}
        )
        assert (status, answer["error"]) == (415, "unsupported_media_type"), (other, answer)
    assert count(db, "outcome_labels") == 1
