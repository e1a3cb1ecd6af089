"""`make demo`: the main job end to end on local defaults, through the real HTTP routes."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import threading
import urllib.error
import urllib.request
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from botocore.credentials import ReadOnlyCredentials
from botocore.session import Session

from flywheel.client import FlywheelClient
from flywheel.local import seed, signing
from flywheel.local.embedded import ensure_local_database
from flywheel.local.invoke import function_environment
from flywheel.local.server import make_server
from flywheel.local.signing import SendGridSigner
from flywheel.local.sigv4 import SigV4Verifier
from flywheel.local.stack import LocalStack
from flywheel.settings import reset_settings

DEMO_DB = "flywheel_demo"  # recreated on every run when the embedded server is used


# The demo's operator signs with these (inside the emulation the credential chain holds moto's
# placeholder key, which would become the actor of every registry change in the report).
DEMO_KEY_ID, DEMO_SECRET = "demo-operator", "demo-operator-secret"  # noqa: S105 - local only


class LocalClient:
    """The demo's sender: internal routes signed with SigV4 by flywheel.client (the local server
    checks them), webhooks posted as their providers post them."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        session = Session()
        session.set_credentials(DEMO_KEY_ID, DEMO_SECRET)
        self.api = FlywheelClient(base_url, session=session, max_attempts=1)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        if not path.startswith("/webhooks/"):
            status, _, parsed = self.api.call(method, path, body)
            return status, parsed
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(  # noqa: S310
            self.base_url + path,
            data=data,
            method=method,  # noqa: S310 (localhost)
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                return resp.status, _decode(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, _decode(err.read())


def _decode(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")


@contextlib.contextmanager
def _demo_services(root: Path, log: Callable[[str], None]) -> Iterator[LocalStack]:
    """The local stack (AWS emulated in-process, local secrets, HubSpot's API on localhost)."""
    saved = dict(os.environ)
    try:
        with LocalStack(root, log=log, journal=False) as stack:
            reset_settings()
            yield stack
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_settings()


def _classify_queued_replies(stack: LocalStack, print: Callable[..., None]) -> None:  # noqa: A002
    """RepliesQueue delivers to ClassifierFunction, as its SQS event source mapping does."""
    deliveries = [d for d in stack.pump() if d.mapping.function == "ClassifierFunction"]
    source = "LLM" if os.environ.get("OPENAI_API_KEY") else "offline rules"
    print(
        f"ClassifierFunction on {sum(d.messages for d in deliveries)} queued replies ({source}) -> "
        f"{sum(d.failed for d in deliveries)} failures"
    )


def _replies_queued(stack: LocalStack) -> int:
    attributes = stack.sqs.get_queue_attributes(
        QueueUrl=stack.queue_url("RepliesQueue"), AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def run_demo(root: Path) -> None:
    """Print the story on stdout; the handlers' logs and EMF metrics go to .flywheel/demo.log."""
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    warnings.filterwarnings("ignore", category=UserWarning)
    log_path = root / ".flywheel" / "demo.log"
    log_path.parent.mkdir(exist_ok=True)
    real_stdout = sys.stdout
    with (
        log_path.open("w") as log,
        contextlib.redirect_stdout(log),
        _demo_services(root, lambda line: print(line, file=log, flush=True)) as stack,
    ):
        _demo(root, stack, lambda *parts: print(*parts, file=real_stdout, flush=True))
    print(f"(handler logs and metrics: {log_path})")


HUBSPOT_PORTAL = 424242
HUBSPOT_DEAL = "9001"


def _multipart(fields: dict[str, str], boundary: str = "flywheelDemo") -> tuple[bytes, str]:
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


REPLIES = [
    "Interesting timing - we are reviewing our forecasting process. Can we talk Tuesday?",
    "Not a priority right now, maybe next quarter.",
    "Please remove me from your list.",
    "We already use a competitor and are happy with it.",
    "Sounds great, send me a calendar invite for next week.",
]


def _send_outcomes(
    stack: LocalStack, client: LocalClient, messages: list[dict[str, Any]], ids: list[str], print: Callable[..., None]
) -> None:  # noqa: A002
    """Replay the providers' webhooks for the campaign, signed as each provider signs (with the
    local development secrets, which the stack's webhook secret holds)."""
    secrets = stack.secrets
    signer = SendGridSigner(secrets["sendgrid_private_key"])
    rng = random.Random(11)  # noqa: S311 - synthetic data
    now = int(datetime.now(UTC).timestamp())
    events: list[dict[str, Any]] = []
    for i, (message, outcome_id) in enumerate(zip(messages, ids, strict=True)):
        sent = int(datetime.fromisoformat(message["sent_at"]).timestamp())
        base = {
            "email": message["lead_email"],
            "sg_message_id": f"{message['provider_message_id']}.filter0001.1.0",
            "outcome_id": outcome_id,
        }
        kinds = ["processed", "bounce"] if i % 13 == 5 else ["processed", "delivered"]
        if kinds[-1] == "delivered":
            if rng.random() < 0.3:
                kinds.append("open:machine")
            if rng.random() < 0.6:
                kinds += ["open"] * rng.randint(1, 3)
            if rng.random() < 0.2:
                kinds.append("click")
        for n, kind in enumerate(kinds):
            name, _, flag = kind.partition(":")
            events.append(
                {
                    **base,
                    "event": name,
                    "timestamp": min(now, sent + 60 * (n + 1)),
                    "sg_event_id": f"demo-{outcome_id}-{n}",
                    "sg_machine_open": flag == "machine",
                    **({"type": "bounce", "reason": "550 mailbox unavailable"} if name == "bounce" else {}),
                }
            )
    rng.shuffle(events)  # providers do not promise order
    body = (json.dumps(events) + "\r\n").encode()
    status, result = client.request("POST", "/webhooks/sendgrid", raw=body, headers=signer.headers(body))
    print(f"POST /webhooks/sendgrid ({len(events)} signed events) -> {status}: {result}")
    status, again = client.request("POST", "/webhooks/sendgrid", raw=body, headers=signer.headers(body))
    print(f"  the same batch again -> {status}: duplicates={again['duplicates']} stored={again['stored']}")

    for text, (message, outcome_id) in zip(REPLIES, list(zip(messages, ids, strict=True))[: len(REPLIES)], strict=True):
        form, content_type = _multipart(
            {
                "from": message["lead_email"],
                "to": f"reply+{outcome_id}@{seed.PARSE_DOMAIN}",
                "subject": "Re: " + message["subject"],
                "text": text + "\n\nOn Mon, Sam wrote:\n> Hi there",
                "headers": f"Message-ID: <reply-{outcome_id}@prospect.example>\r\n",
                "envelope": json.dumps(
                    {"to": [f"reply+{outcome_id}@{seed.PARSE_DOMAIN}"], "from": message["lead_email"]}
                ),
            }
        )
        status, result = client.request(
            "POST",
            f"/webhooks/sendgrid/inbound/{secrets['inbound_parse_token']}",
            raw=form,
            headers={"Content-Type": content_type},
        )
    print(f"POST /webhooks/sendgrid/inbound/<token> x{len(REPLIES)} (replies) -> {status}")

    for n, outcome_id in enumerate(ids[:3]):
        start = datetime.now(UTC) + timedelta(days=2 - 3 * n)  # one meeting already held
        envelope = {
            "event": "invitee.created",
            "created_at": datetime.now(UTC).isoformat(),
            "created_by": "https://api.calendly.com/users/demo",
            "payload": {
                "uri": f"https://api.calendly.com/scheduled_events/E{n}/invitees/I{n}",
                "email": messages[n]["lead_email"],
                "scheduled_event": {
                    "uri": f"https://api.calendly.com/scheduled_events/E{n}",
                    "start_time": start.isoformat(),
                    "end_time": (start + timedelta(minutes=30)).isoformat(),
                },
                "tracking": {"utm_content": outcome_id},
            },
        }
        body = json.dumps(envelope).encode()
        status, result = client.request(
            "POST",
            "/webhooks/calendly",
            raw=body,
            headers=signing.calendly_headers(secrets["calendly_signing_key"], body),
        )
    print(f"POST /webhooks/calendly x3 (bookings) -> {status}")

    # the deal, won, in the local HubSpot API; its portal belongs to the campaign's organisation
    stack.crm.records.hubspot_deals[HUBSPOT_DEAL] = (
        {
            "amount": "48000",
            "dealstage": "closedwon",
            "hs_is_closed_won": "true",
            "hs_is_closed": "true",
            "deal_currency_code": "USD",
            "closedate": datetime.now(UTC).isoformat(),
        },
        {"77": messages[0]["lead_email"]},
    )
    os.environ["PROVIDER_ORGS_JSON"] = json.dumps({f"hubspot:{HUBSPOT_PORTAL}": messages[0]["org_id"]})
    reset_settings()
    hubspot = [
        {
            "eventId": now,
            "portalId": HUBSPOT_PORTAL,
            "occurredAt": now * 1000,
            "objectId": int(HUBSPOT_DEAL),
            "subscriptionType": "deal.propertyChange",
            "propertyName": "dealstage",
            "propertyValue": "closedwon",
            "attemptNumber": 0,
        }
    ]
    body = json.dumps(hubspot).encode()
    url = signing.verifier_url(client.base_url, signing.PROVIDERS["hubspot"], None)
    status, result = client.request(
        "POST",
        "/webhooks/crm/hubspot",
        raw=body,
        headers=signing.hubspot_headers(secrets["hubspot_client_secret"], body, url),
    )
    print(f"POST /webhooks/crm/hubspot (deal won, enriched from the HubSpot API) -> {status}: {result}")
    status, result = client.request(
        "POST", "/webhooks/sendgrid", raw=body, headers={"Content-Type": "application/json"}
    )
    print(f"an unsigned POST /webhooks/sendgrid -> {status}: {result['error']}")


def _train(stack: LocalStack, client: LocalClient, print: Callable[..., None]) -> None:  # noqa: A002
    """A history of outcomes from an opted-in org, then the weekly state machine, locally."""
    from flywheel.services.outcomes import set_training_opt_in

    org = f"history-{datetime.now(UTC):%Y%m%d%H%M%S}"
    set_training_opt_in(org, True)
    history = seed.history(org, 90)
    _, registered = client.request("POST", "/messages", {"messages": history})
    ids = [o["outcome_id"] for o in registered["outcomes"]]
    seed.record_engagement(history, ids)
    print(f"history: {len(ids)} past messages of opted-in org {org}, delivered, opened, clicked and answered")
    print("Step Functions (moto, tasks run in-process): weekly training started with the Monday schedule's input")
    status = _run_weekly(stack, {"min_quality_score": 0.6, "deploy": True, "canary_percentage": 10, "wait_seconds": 0})
    from flywheel.services.training import get_run, list_models

    print(f"  execution: {status}")
    models = list_models(None)
    if models:
        run = get_run(models[0]["run_id"])
        manifest = run["manifest"]
        print(
            f"  run {run['run_id']}: {run['status']}; dataset {manifest['counts']['train']} train + "
            f"{manifest['counts']['validation']} validation examples, redactions {manifest['redactions']}, "
            f"estimated cost ${manifest['cost_estimate']['usd']}"
        )
    for model in models:
        print(
            f"  model {model['model_id']} ({model['provider']}, base {model['base_model']}): "
            f"status={model['status']} role={model['role']} traffic={float(model['traffic_percentage']):.0f}%"
        )


def _run_weekly(stack: LocalStack, payload: dict[str, Any]) -> str:
    """The weekly state machine (moto, tasks in-process); the emulated Bedrock job finishes when polled."""
    execution = stack.start_execution("WeeklyTrainingStateMachine", payload)
    return str(stack.wait_execution(execution, timeout_s=120)["status"])


# The experiment's settings in the demo. The outcome history of a demo is a few dozen leads, so the
# plan falls back to these configured figures (and says so). A 10,000-lead demo cannot show the
# production margins on rare guardrails (0.05 pp spam reports): it widens them, visibly.
DEMO_EXPERIMENT = {
    "mde": 0.5,
    "baseline": 0.03,
    "weekly_volume": 30_000,
    "canary_ratio": 4,
    "margins": {"spam_report": 0.003, "spam_report_1d": 0.003, "unsubscribe": 0.003, "unsubscribe_1d": 0.003},
}


def _route_and_send(
    client: LocalClient, prefix: str, count: int, first_sent: datetime, spacing: timedelta, arms: Counter[str]
) -> list[tuple[dict[str, Any], str]]:
    """Prospects routed through GET /route, their messages registered with the route result."""
    messages: list[dict[str, Any]] = []
    for i in range(count):
        lead = f"{prefix}-{i}"
        _, routed = client.request("GET", f"/route?org_id=demo-ab&lead_id={lead}")
        arms[routed["arm"]] += 1
        messages.append(
            {
                "org_id": "demo-ab",
                "campaign_id": "spring-outbound",
                "lead_id": lead,
                "lead_email": f"{lead}@prospect{i % 97}.example",
                "body": f"Hi, message {i}",
                "framework": seed.FRAMEWORKS[i % 3],
                "tone": seed.TONES[(i // 3) % 2],
                "lead": {"industry": seed.INDUSTRIES[i % 4], "role": seed.ROLES[(i // 12) % 4]},
                "sent_at": (first_sent + i * spacing).isoformat(),
                "route": {
                    "model_registry_id": routed["model"]["model_registry_id"],
                    "experiment_id": routed["experiment_id"],
                    "arm": routed["arm"],
                },
            }
        )
    ids: list[str] = []
    for start in range(0, len(messages), 500):
        _, result = client.request("POST", "/messages", {"messages": messages[start : start + 500]})
        ids += [o["outcome_id"] for o in result["outcomes"]]
    return list(zip(messages, ids, strict=True))


def _experiment(stack: LocalStack, client: LocalClient, print: Callable[..., None]) -> list[tuple[dict[str, Any], str]]:  # noqa: A002
    """A second weekly run deploys a challenger whose planned lift the planner says is detectable;
    simulated prospects go through GET /route and POST /messages: first the canary, which the daily
    evaluator advances once it holds the sample that catches a quadrupled bounce rate, then the A/B
    stage, which POST /training/promote-winner settles."""
    from flywheel.models.classification import Classification
    from flywheel.models.replies import ReplyJob
    from flywheel.services import experiments
    from flywheel.services.classification import store_classification

    status = _run_weekly(
        stack,
        {
            "min_quality_score": 0.6,
            "deploy": True,
            "canary_percentage": 20,
            "wait_seconds": 0,
            "experiment_config": DEMO_EXPERIMENT,
        },
    )
    _, models = client.request("GET", "/training/models?status=deployed")
    roles = {m["role"]: f"{m['model_id']} at {float(m['traffic_percentage']):.0f}%" for m in models["models"]}
    print(f"second weekly run: {status}; champion {roles.get('champion')}, challenger {roles.get('challenger')}")
    _, listed = client.request("GET", "/experiments?limit=1")
    experiment = listed["experiments"][0]
    plan = experiment["plan"]
    print(
        f"  plan ({plan['source']} figures; {len(plan['notes'])} notes on thin history): canary "
        f"{plan['canary_sample']:,} leads (~{plan['canary_days']} days at {plan['weekly_volume']:,.0f} leads a week) "
        f"to catch a quadrupled 1-day bounce rate; A/B {plan['sequential_sample']:,} leads for a "
        f"{plan['mde']:+.0%} lift on {plan['baselines']['positive_reply']:.1%}: "
        f"{'fits' if plan['fits'] else 'does NOT fit'} in {plan['max_runtime_days']:.0f} days; "
        f"warnings: {plan['warnings'] or 'none'}; demo margins {DEMO_EXPERIMENT['margins']}"
    )

    experiments.shift_clock(days=23)  # simulated time: the experiment started 23 days ago
    started = datetime.fromisoformat(
        client.request("GET", f"/experiments/{experiment['experiment_id']}")[1]["started_at"]
    )
    arms: Counter[str] = Counter()
    canary = _route_and_send(
        client,
        "canary",
        int(plan["canary_sample"] * 1.03),
        started + timedelta(minutes=10),
        timedelta(seconds=10),
        arms,
    )
    print(
        f"canary: GET /route x{len(canary)} (sticky, hashed) -> {dict(arms)}; POST /messages with each route "
        "result, all sent in the canary's first day"
    )
    # the evaluator's daily look on day 3 (the service call ExperimentEvaluatorFunction makes, clock at day 3)
    decided = experiments.evaluate(actor="evaluator", now=started + timedelta(days=3))
    print(f"evaluator on day 3 -> {decided['action']}: {decided['reason']}")

    rng = random.Random(5)  # noqa: S311 - synthetic prospects
    arms = Counter()
    experiments.forget_cache()
    ab = _route_and_send(client, "prospect", 4000, started + timedelta(days=3, hours=1), timedelta(seconds=10), arms)
    print(f"A/B from day 3: GET /route x4000 -> {dict(arms)}; POST /messages with each route result")
    interested = Classification.model_validate(
        {
            "category": "interested",
            "sentiment_score": 0.7,
            "interest_level": "high",
            "objection_type": "none",
            "referral_contact": None,
            "return_date": None,
            "confidence": 0.9,
            "reason": "simulated",
            "source": "fallback",
            "model": "demo",
        }
    )
    for message, outcome_id in ab:
        rate = 0.12 if message["route"]["arm"] == "challenger" else 0.03
        if rng.random() < rate:
            store_classification(
                ReplyJob(
                    outcome_id=UUID(outcome_id),
                    reply_key=f"demo_ab:{outcome_id}",
                    text="Interested, tell me more",
                    received_at=datetime.fromisoformat(message["sent_at"]) + timedelta(days=2),
                ),
                interested,
            )
    status_code, decision = client.request("POST", "/training/promote-winner", {})
    primary = decision.get("primary") or decision.get("decision", {}).get("primary", {})
    low, high = primary.get("sequential_interval", [None, None])
    rates = primary.get("rates", [0, 0])
    print(
        f"POST /training/promote-winner -> {status_code}: {decision.get('action', decision.get('message'))}; "
        f"positive-reply rate champion {rates[0]:.1%} vs challenger {rates[1]:.1%}, lift {primary['lift']:+.0%}, "
        f"always-valid 95% interval [{low:+.0%}, {high:+.0%}]"
    )
    guardrails = decision.get("guardrails") or decision.get("decision", {}).get("guardrails", {})
    print(
        f"  guardrails non-inferior (upper bound below margin): "
        f"{sum(g['non_inferior'] for g in guardrails.values())} of {len(guardrails)}; clear harm: "
        f"{[n for n, g in guardrails.items() if g['harm']] or 'none'}"
    )
    _, history = client.request("GET", f"/experiments/{experiment['experiment_id']}/evaluations")
    print(
        "evaluation history:", ", ".join(f"day {e['days_running']:.0f} {e['action']}" for e in history["evaluations"])
    )
    _, models = client.request("GET", "/training/models?status=deployed")
    print(
        "registry now:",
        ", ".join(f"{m['model_id']} {m['role']} {float(m['traffic_percentage']):.0f}%" for m in models["models"]),
    )
    return canary + ab


def _engagement(
    stack: LocalStack, client: LocalClient, sent: list[tuple[dict[str, Any], str]], print: Callable[..., None]
) -> None:  # noqa: A002
    """The rest of the experiment's outcomes arrive as they would: SendGrid's delivery, bounce, open
    (human and privacy-proxy) and click events through the signed webhook, and the other replies."""
    from flywheel.models.classification import Classification
    from flywheel.models.replies import ReplyJob
    from flywheel.services.classification import store_classification

    signer = SendGridSigner(stack.secrets["sendgrid_private_key"])
    rng = random.Random(13)  # noqa: S311 - synthetic data
    now = int(datetime.now(UTC).timestamp())
    events: list[dict[str, Any]] = []
    for message, outcome_id in sent:
        at = int(datetime.fromisoformat(message["sent_at"]).timestamp())
        kinds = ["processed", "bounce" if rng.random() < 0.02 else "delivered"]
        if kinds[-1] == "delivered":
            kinds += (
                ["open:machine"] * (rng.random() < 0.25)
                + ["open"] * (rng.random() < 0.4)
                + ["click"] * (rng.random() < 0.06)
            )
        for n, kind in enumerate(kinds):
            name, _, flag = kind.partition(":")
            events.append(
                {
                    "email": message["lead_email"],
                    "event": name,
                    "outcome_id": outcome_id,
                    "timestamp": min(now, at + 90 * (n + 1)),
                    "sg_event_id": f"demo-ab-{outcome_id}-{n}",
                    "sg_machine_open": flag == "machine",
                    **({"type": "bounce", "reason": "550 5.1.1 user unknown"} if name == "bounce" else {}),
                }
            )
    statuses = []
    for start in range(0, len(events), 2000):
        body = (json.dumps(events[start : start + 2000]) + "\r\n").encode()
        statuses.append(client.request("POST", "/webhooks/sendgrid", raw=body, headers=signer.headers(body))[0])
    others = [("not_now", 0.02), ("out_of_office", 0.015), ("not_interested", 0.01), ("question", 0.008)]
    replies = 0
    for message, outcome_id in sent:
        draw, category = rng.random(), None
        for name, share in others:
            if draw < share:
                category = name
                break
            draw -= share
        if category is None:
            continue
        store_classification(
            ReplyJob(
                outcome_id=UUID(outcome_id),
                reply_key=f"demo_ab_other:{outcome_id}",
                text="Thanks for reaching out",
                received_at=datetime.fromisoformat(message["sent_at"]) + timedelta(hours=20),
            ),
            Classification.model_validate(
                {
                    "category": category,
                    "sentiment_score": 0.0,
                    "interest_level": "low",
                    "objection_type": "none",
                    "referral_contact": None,
                    "return_date": None,
                    "confidence": 0.8,
                    "reason": "simulated",
                    "model": "demo",
                    "source": "llm" if rng.random() < 0.6 else "fallback",
                }
            ),
        )
        replies += 1
    print(
        f"POST /webhooks/sendgrid x{len(statuses)} ({len(events):,} signed events for the experiment's "
        f"messages) -> {sorted(set(statuses))}; {replies} more replies classified"
    )


def _report(stack: LocalStack, root: Path, org_id: str, print: Callable[..., None]) -> Path:  # noqa: A002
    """The organisation's report as ReportFunction collects it (its environment names the local
    queues, whose depths it shows), and its essentials as `flywheel status` prints them."""
    from flywheel.services.reports import collect, render_html
    from flywheel.views.status_text import render

    with function_environment(stack.template.functions()["ReportFunction"]):
        data = collect(org_id)
    print(render(data, color=False).rstrip())
    path = root / ".flywheel" / "demo-report.html"
    path.write_text(render_html(data), encoding="utf-8")
    print(f"report written: {path}")
    return path


def _demo(root: Path, stack: LocalStack, print: Callable[..., None]) -> None:  # noqa: A002 - the demo's printer
    print("== Flywheel demo (local: embedded PostgreSQL, in-process API) ==")
    url = ensure_local_database(
        root, database=DEMO_DB, fresh=not os.environ.get("DATABASE_URL"), report=lambda line: None
    )
    print(f"database ready and migrated: {url.split('?')[0]}")
    # the internal routes check SigV4 signatures, as API Gateway's IAM auth does
    verifier = SigV4Verifier({DEMO_KEY_ID: ReadOnlyCredentials(DEMO_KEY_ID, DEMO_SECRET, None)})
    server = make_server(root / "template.yaml", "127.0.0.1", 0, verifier=verifier)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = LocalClient(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        messages = seed.synthetic_campaign(f"demo-{datetime.now(UTC):%Y%m%d%H%M%S}", 40)
        status, result = client.request("POST", "/messages", {"messages": messages})
        print(
            f"POST /messages (batch of {len(messages)}) -> {status}: created={result['created']} "
            f"existing={result['existing']}"
        )
        status, again = client.request("POST", "/messages", {"messages": messages})
        print(f"POST /messages again (idempotent) -> {status}: created={again['created']} existing={again['existing']}")
        status, bad = client.request("POST", "/messages", {"messages": [{**messages[0], "lead_email": "nope"}]})
        print(f"POST /messages with a bad email -> {status}: {bad['message']}")
        ids = [o["outcome_id"] for o in result["outcomes"]]
        _send_outcomes(stack, client, messages, ids, print)
        _classify_queued_replies(stack, print)
        outcomes = [
            client.request("GET", f"/messages/{outcome_id}?org_id={messages[0]['org_id']}")[1] for outcome_id in ids
        ]
        won = next(o for o in outcomes if o["deal_status"] == "won")
        print(
            f"GET /messages/{won['outcome_id']} -> stage={won['stage']} label={won['training_label']} "
            f"weight={won['training_weight']} quality={won['quality_score']} events={len(won['events'])}"
        )
        print("funnel (furthest stage per message):", dict(Counter(o["stage"] for o in outcomes).most_common()))
        print("training labels:", dict(Counter(o["training_label"] for o in outcomes).most_common()))
        categories = Counter(o["reply_category"] for o in outcomes if o["reply_category"])
        print("reply categories:", dict(categories.most_common()))
        print(f"replies still waiting on the SQS queue: {_replies_queued(stack)}")
        _train(stack, client, print)
        _engagement(stack, client, _experiment(stack, client, print), print)
        _report(stack, root, "demo-ab", print)
    finally:
        server.shutdown()
    print("demo finished")
