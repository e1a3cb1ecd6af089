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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import boto3

from flywheel.local import signing
from flywheel.local.aws import local_aws
from flywheel.local.embedded import ensure_local_database
from flywheel.local.invoke import invoke
from flywheel.local.server import make_server
from flywheel.local.signing import SendGridSigner
from flywheel.settings import reset_settings

DEMO_DB = "flywheel_demo"  # recreated on every run when the embedded server is used
INDUSTRIES = ["saas", "fintech", "logistics", "healthcare"]
ROLES = ["vp sales", "head of growth", "cto", "founder"]
FRAMEWORKS = ["PAS", "AIDA", "BAB"]
TONES = ["professional", "casual"]


class LocalClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base_url + path, data=data, method=method,  # noqa: S310 (localhost)
                                     headers={"Content-Type": "application/json", **(headers or {})})
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


def synthetic_campaign(org_id: str, count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    start = datetime.now(UTC) - timedelta(days=3)
    messages = []
    for i in range(count):
        first = rng.choice(["Ana", "Ben", "Chloe", "Dev", "Eli", "Fay"])
        framework, tone = rng.choice(FRAMEWORKS), rng.choice(TONES)
        messages.append({
            "org_id": org_id,
            "campaign_id": "demo-q4-outbound",
            "lead_id": f"lead-{i:04d}",
            "lead_email": f"{first.lower()}.{i}@prospect{i % 17}.example",
            "subject": f"{first}, a faster way to forecast pipeline",
            "body": f"Hi {first},\n\nTeams like yours cut forecast prep by half with us ({framework}/{tone}).\n"
                    "Worth a 15-minute look next week?\n\nSam",
            "framework": framework,
            "tone": tone,
            "brief": "pipeline forecasting pain for revenue leaders",
            "agent_decisions": {"PersonalizerAgent": {"hook": "forecasting"},
                                "CopywriterAgent": {"framework": framework}},
            "model_id": "gpt-4o-mini-2024-07-18",
            "lead": {"first_name": first, "company": f"Prospect {i % 17}", "industry": rng.choice(INDUSTRIES),
                     "role": rng.choice(ROLES), "company_size": rng.choice(["11-50", "51-200", "201-1000"]),
                     "icp_score": round(rng.random(), 2)},
            "sent_at": (start + timedelta(minutes=7 * i)).isoformat(),
            "provider_message_id": f"demo{i:04d}.sgmsg",
        })
    return messages


@contextlib.contextmanager
def _demo_services(root: Path) -> Iterator[None]:
    """AWS emulated in-process (the replies queue); a fake HubSpot API on localhost."""
    saved = dict(os.environ)
    with local_aws(root / "template.yaml"):
        os.environ["REPLIES_QUEUE_URL"] = boto3.client("sqs").create_queue(QueueName="flywheel-replies")["QueueUrl"]
        hubspot = _fake_hubspot(HUBSPOT_CONTACT)
        os.environ.update(HUBSPOT_API_BASE=f"http://127.0.0.1:{hubspot.server_address[1]}",
                          INBOUND_PARSE_DOMAINS=PARSE_DOMAIN)
        reset_settings()
        try:
            yield
        finally:
            hubspot.shutdown()
            os.environ.clear()
            os.environ.update(saved)
            reset_settings()


def _classify_queued_replies(root: Path, print: Callable[..., None]) -> None:  # noqa: A002
    """Hand the queued replies to ClassifierFunction as the SQS event source mapping would."""
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=os.environ["REPLIES_QUEUE_URL"], MaxNumberOfMessages=10)["Messages"]
    records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:flywheel-replies", "awsRegion": "us-east-1"}
               for m in messages]
    result = invoke("ClassifierFunction", {"Records": records}, root / "template.yaml")
    for m in messages:
        sqs.delete_message(QueueUrl=os.environ["REPLIES_QUEUE_URL"], ReceiptHandle=m["ReceiptHandle"])
    source = "LLM" if os.environ.get("OPENAI_API_KEY") else "offline rules"
    print(f"ClassifierFunction on {len(records)} queued replies ({source}) -> "
          f"{len(result['batchItemFailures'])} failures")


def _replies_queued() -> int:
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=os.environ["REPLIES_QUEUE_URL"],
                                                          AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def run_demo(root: Path) -> None:
    """Print the story on stdout; the handlers' logs and EMF metrics go to .flywheel/demo.log."""
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    warnings.filterwarnings("ignore", category=UserWarning)
    log_path = root / ".flywheel" / "demo.log"
    log_path.parent.mkdir(exist_ok=True)
    real_stdout = sys.stdout
    with log_path.open("w") as log, contextlib.redirect_stdout(log), _demo_services(root):
        _demo(root, lambda *parts: print(*parts, file=real_stdout, flush=True))
    print(f"(handler logs and metrics: {log_path})")


DEMO_SECRETS = {
    "inbound_parse_token": "demo-inbound-token",
    "calendly_signing_key": "demo-calendly-key",
    "hubspot_client_secret": "demo-hubspot-secret",
    "hubspot_access_token": "demo-hubspot-token",
}
PARSE_DOMAIN = "reply.demo.example"
HUBSPOT_PORTAL = 424242
HUBSPOT_CONTACT = {"email": ""}  # the lead the fake HubSpot deal belongs to


def _fake_hubspot(contact: dict[str, str]) -> ThreadingHTTPServer:
    """HubSpot's CRM API on localhost: one deal, won, with `contact["email"]` as its contact."""

    class Api(BaseHTTPRequestHandler):
        def _send(self, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            self._send({"id": "9001", "properties": {"amount": "48000", "dealstage": "closedwon",
                                                     "hs_is_closed_won": "true", "hs_is_closed": "true",
                                                     "deal_currency_code": "USD",
                                                     "closedate": datetime.now(UTC).isoformat()},
                        "associations": {"contacts": {"results": [{"id": "77", "type": "deal_to_contact"}]}}})

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._send({"results": [{"id": "77", "properties": {"email": contact["email"]}}]})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _multipart(fields: dict[str, str], boundary: str = "flywheelDemo") -> tuple[bytes, str]:
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in fields.items())
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


REPLIES = [
    "Interesting timing - we are reviewing our forecasting process. Can we talk Tuesday?",
    "Not a priority right now, maybe next quarter.",
    "Please remove me from your list.",
    "We already use a competitor and are happy with it.",
    "Sounds great, send me a calendar invite for next week.",
]


def _send_outcomes(client: LocalClient, messages: list[dict[str, Any]], ids: list[str],
                   print: Callable[..., None]) -> None:  # noqa: A002
    """Replay the providers' webhooks for the campaign, signed as each provider signs."""
    signer = SendGridSigner()
    os.environ["WEBHOOK_SECRETS_JSON"] = json.dumps({**DEMO_SECRETS, "sendgrid_public_key": signer.public_key_b64})
    reset_settings()
    rng = random.Random(11)  # noqa: S311 - synthetic data
    now = int(datetime.now(UTC).timestamp())
    events: list[dict[str, Any]] = []
    for i, (message, outcome_id) in enumerate(zip(messages, ids, strict=True)):
        sent = int(datetime.fromisoformat(message["sent_at"]).timestamp())
        base = {"email": message["lead_email"], "sg_message_id": f"{message['provider_message_id']}.filter0001.1.0",
                "outcome_id": outcome_id}
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
            events.append({**base, "event": name, "timestamp": min(now, sent + 60 * (n + 1)),
                           "sg_event_id": f"demo-{outcome_id}-{n}", "sg_machine_open": flag == "machine",
                           **({"type": "bounce", "reason": "550 mailbox unavailable"} if name == "bounce" else {})})
    rng.shuffle(events)  # providers do not promise order
    body = (json.dumps(events) + "\r\n").encode()
    status, result = client.request("POST", "/webhooks/sendgrid", raw=body, headers=signer.headers(body))
    print(f"POST /webhooks/sendgrid ({len(events)} signed events) -> {status}: {result}")
    status, again = client.request("POST", "/webhooks/sendgrid", raw=body, headers=signer.headers(body))
    print(f"  the same batch again -> {status}: duplicates={again['duplicates']} stored={again['stored']}")

    for text, (message, outcome_id) in zip(REPLIES, list(zip(messages, ids, strict=True))[:len(REPLIES)],
                                           strict=True):
        form, content_type = _multipart({
            "from": message["lead_email"], "to": f"reply+{outcome_id}@{PARSE_DOMAIN}",
            "subject": "Re: " + message["subject"], "text": text + "\n\nOn Mon, Sam wrote:\n> Hi there",
            "headers": f"Message-ID: <reply-{outcome_id}@prospect.example>\r\n",
            "envelope": json.dumps({"to": [f"reply+{outcome_id}@{PARSE_DOMAIN}"], "from": message["lead_email"]}),
        })
        status, result = client.request("POST", f"/webhooks/sendgrid/inbound/{DEMO_SECRETS['inbound_parse_token']}",
                                         raw=form, headers={"Content-Type": content_type})
    print(f"POST /webhooks/sendgrid/inbound/<token> x{len(REPLIES)} (replies) -> {status}")

    for n, outcome_id in enumerate(ids[:3]):
        start = datetime.now(UTC) + timedelta(days=2 - 3 * n)  # one meeting already held
        envelope = {"event": "invitee.created", "created_at": datetime.now(UTC).isoformat(),
                    "created_by": "https://api.calendly.com/users/demo",
                    "payload": {"uri": f"https://api.calendly.com/scheduled_events/E{n}/invitees/I{n}",
                                "email": messages[n]["lead_email"],
                                "scheduled_event": {"uri": f"https://api.calendly.com/scheduled_events/E{n}",
                                                    "start_time": start.isoformat(),
                                                    "end_time": (start + timedelta(minutes=30)).isoformat()},
                                "tracking": {"utm_content": outcome_id}}}
        body = json.dumps(envelope).encode()
        status, result = client.request("POST", "/webhooks/calendly", raw=body,
                                        headers=signing.calendly_headers(DEMO_SECRETS["calendly_signing_key"], body))
    print(f"POST /webhooks/calendly x3 (bookings) -> {status}")

    HUBSPOT_CONTACT["email"] = messages[0]["lead_email"]
    os.environ["PROVIDER_ORGS_JSON"] = json.dumps({f"hubspot:{HUBSPOT_PORTAL}": messages[0]["org_id"]})
    reset_settings()
    hubspot = [{"eventId": now, "portalId": HUBSPOT_PORTAL, "occurredAt": now * 1000, "objectId": 9001,
                "subscriptionType": "deal.propertyChange", "propertyName": "dealstage", "propertyValue": "closedwon",
                "attemptNumber": 0}]
    body = json.dumps(hubspot).encode()
    url = f"https://127.0.0.1:{client.base_url.rsplit(':', 1)[1]}/local/webhooks/crm/hubspot"
    status, result = client.request("POST", "/webhooks/crm/hubspot", raw=body,
                                    headers=signing.hubspot_headers(DEMO_SECRETS["hubspot_client_secret"], body, url))
    print(f"POST /webhooks/crm/hubspot (deal won, enriched from the HubSpot API) -> {status}: {result}")
    status, result = client.request("POST", "/webhooks/sendgrid", raw=body,
                                    headers={"Content-Type": "application/json"})
    print(f"an unsigned POST /webhooks/sendgrid -> {status}: {result['error']}")


OPENERS = ["Your forecast calls probably eat half of every Monday.", "Pipeline reviews tend to drift into guesswork.",
           "Reps update the CRM the night before the board meeting.", "Regional leaders rarely trust the roll-up.",
           "Deals slip a quarter and nobody saw it coming.", "Commit numbers move every time someone asks.",
           "New managers inherit territories with no history.", "Win rates hide inside spreadsheets nobody opens."]
PROOFS = ["We flag at-risk deals from email and calendar activity.", "Teams cut forecast prep from hours to minutes.",
          "Managers see which stage conversions changed this week.", "Every number links back to the deals behind it.",
          "It works on top of Salesforce and HubSpot as they are.", "Leaders get a weekly summary written for them.",
          "Coaching notes attach to the exact deal moment.", "The rollout takes two weeks, not two quarters.",
          "Finance and sales finally look at the same figure.", "Historical accuracy is scored per rep and segment.",
          "Alerts arrive in Slack before a deal goes quiet."]
ASKS = ["Worth fifteen minutes on Thursday?", "Open to a short teardown of last quarter?",
        "Should I send a sample report?", "Who runs forecasting on your side?", "Could we compare notes next week?",
        "Is this a priority this half?", "Would a benchmark for your segment help?",
        "Shall I hold a slot on Tuesday morning?", "Want the two-page summary first?",
        "Any appetite for a pilot with one team?", "Can I show you the deal risk view?",
        "Does your RevOps lead want to join?", "Interested in a quick demo?"]


def _history(org_id: str, n: int) -> list[dict[str, Any]]:
    """Past campaigns of an opted-in organisation: varied messages, as a real history would be."""
    start = datetime.now(UTC) - timedelta(days=30)
    messages = synthetic_campaign(org_id, n, seed=23)
    for i, m in enumerate(messages):
        first = m["lead"]["first_name"]
        m.update(lead_id=f"hist-{i}", provider_message_id=f"{org_id}-hist{i}", sent_at=(start + timedelta(
            hours=5 * i)).isoformat(), subject=f"{first}, {OPENERS[i % 8].split(' ')[1]} and your forecast",
            body=f"Hi {first},\n\n{OPENERS[i % 8]} {PROOFS[i % 11]} {ASKS[i % 13]}\n\nSam")
    return messages


def _train(root: Path, client: LocalClient, print: Callable[..., None]) -> None:  # noqa: A002
    """A history of outcomes from an opted-in org, then the weekly state machine, locally."""
    from flywheel.services.outcomes import set_training_opt_in

    org = f"history-{datetime.now(UTC):%Y%m%d%H%M%S}"
    set_training_opt_in(org, True)
    history = _history(org, 90)
    _, registered = client.request("POST", "/messages", {"messages": history})
    ids = [o["outcome_id"] for o in registered["outcomes"]]
    signer = SendGridSigner()
    os.environ["WEBHOOK_SECRETS_JSON"] = json.dumps({**DEMO_SECRETS, "sendgrid_public_key": signer.public_key_b64})
    reset_settings()
    events = [{"email": m["lead_email"], "event": kind, "timestamp": int(datetime.fromisoformat(m["sent_at"])
               .timestamp()) + 60 * n, "sg_event_id": f"{oid}-{kind}", "outcome_id": oid}
              for m, oid in zip(history, ids, strict=True) for n, kind in enumerate(["delivered", "open", "click"])]
    body = (json.dumps(events) + "\r\n").encode()
    client.request("POST", "/webhooks/sendgrid", raw=body, headers=signer.headers(body))
    from flywheel.models.classification import Classification
    from flywheel.models.replies import ReplyJob
    from flywheel.services.replies import store_classification

    interested = Classification.model_validate({
        "category": "interested", "sentiment_score": 0.8, "interest_level": "high", "objection_type": "none",
        "referral_contact": None, "return_date": None, "confidence": 0.9, "reason": "asked for details",
        "source": "fallback", "model": "demo"})
    for m, oid in zip(history, ids, strict=True):
        store_classification(ReplyJob(outcome_id=oid, reply_key=f"demo_reply:{oid}", text="Sounds good, tell me more",
                                      received_at=datetime.fromisoformat(m["sent_at"]) + timedelta(hours=3)),
                             interested)
    print(f"history: {len(ids)} past messages of opted-in org {org}, delivered, opened, clicked and answered")

    os.environ.update(TRAINING_BUCKET="flywheel-demo-training", FINETUNE_PROVIDER="bedrock",
                      BEDROCK_ROLE_ARN="arn:aws:iam::123456789012:role/bedrock-customization")
    reset_settings()
    boto3.client("s3").create_bucket(Bucket="flywheel-demo-training")
    print("Step Functions (moto, tasks run in-process): weekly training started with the Monday schedule's input")
    status = _run_weekly(root, {"min_quality_score": 0.6, "deploy": True, "canary_percentage": 10,
                                "wait_seconds": 0})
    from flywheel.services.training import get_run, list_models

    print(f"  execution: {status}")
    models = list_models(None)
    if models:
        run = get_run(models[0]["run_id"])
        manifest = run["manifest"]
        print(f"  run {run['run_id']}: {run['status']}; dataset {manifest['counts']['train']} train + "
              f"{manifest['counts']['validation']} validation examples, redactions {manifest['redactions']}, "
              f"estimated cost ${manifest['cost_estimate']['usd']}")
    for model in models:
        print(f"  model {model['model_id']} ({model['provider']}, base {model['base_model']}): "
              f"status={model['status']} role={model['role']} traffic={float(model['traffic_percentage']):.0f}%")


def _run_weekly(root: Path, payload: dict[str, Any]) -> str:
    """The weekly state machine (moto, tasks in-process); the emulated Bedrock job finishes when polled."""
    from flywheel.local.aws import complete_bedrock_jobs, run_weekly_training

    return str(run_weekly_training(root, payload, on_tick=complete_bedrock_jobs, timeout_s=120)["status"])


# The experiment's settings in the demo. The outcome history of a demo is a few dozen leads, so the
# plan falls back to these configured figures (and says so). A 10,000-lead demo cannot show the
# production margins on rare guardrails (0.05 pp spam reports): it widens them, visibly.
DEMO_EXPERIMENT = {"mde": 0.5, "baseline": 0.03, "weekly_volume": 30_000, "canary_ratio": 4,
                   "margins": {"spam_report": 0.003, "spam_report_1d": 0.003, "unsubscribe": 0.003,
                               "unsubscribe_1d": 0.003}}


def _route_and_send(client: LocalClient, prefix: str, count: int, first_sent: datetime, spacing: timedelta,
                    arms: Counter[str]) -> list[tuple[dict[str, Any], str]]:
    """Prospects routed through GET /route, their messages registered with the route result."""
    messages: list[dict[str, Any]] = []
    for i in range(count):
        lead = f"{prefix}-{i}"
        _, routed = client.request("GET", f"/route?org_id=demo-ab&lead_id={lead}")
        arms[routed["arm"]] += 1
        messages.append({"org_id": "demo-ab", "campaign_id": "spring-outbound", "lead_id": lead,
                         "lead_email": f"{lead}@prospect{i % 97}.example", "body": f"Hi, message {i}",
                         "framework": FRAMEWORKS[i % 3], "tone": TONES[(i // 3) % 2],
                         "lead": {"industry": INDUSTRIES[i % 4], "role": ROLES[(i // 12) % 4]},
                         "sent_at": (first_sent + i * spacing).isoformat(),
                         "route": {"model_registry_id": routed["model"]["model_registry_id"],
                                   "experiment_id": routed["experiment_id"], "arm": routed["arm"]}})
    ids: list[str] = []
    for start in range(0, len(messages), 500):
        _, result = client.request("POST", "/messages", {"messages": messages[start:start + 500]})
        ids += [o["outcome_id"] for o in result["outcomes"]]
    return list(zip(messages, ids, strict=True))


def _experiment(root: Path, client: LocalClient,
                print: Callable[..., None]) -> list[tuple[dict[str, Any], str]]:  # noqa: A002
    """A second weekly run deploys a challenger whose planned lift the planner says is detectable;
    simulated prospects go through GET /route and POST /messages: first the canary, which the daily
    evaluator advances once it holds the sample that catches a quadrupled bounce rate, then the A/B
    stage, which POST /training/promote-winner settles."""
    from flywheel.models.classification import Classification
    from flywheel.models.replies import ReplyJob
    from flywheel.services import experiments
    from flywheel.services.replies import store_classification

    status = _run_weekly(root, {"min_quality_score": 0.6, "deploy": True, "canary_percentage": 20,
                                "wait_seconds": 0, "experiment_config": DEMO_EXPERIMENT})
    _, models = client.request("GET", "/training/models?status=deployed")
    roles = {m["role"]: f"{m['model_id']} at {float(m['traffic_percentage']):.0f}%" for m in models["models"]}
    print(f"second weekly run: {status}; champion {roles.get('champion')}, challenger {roles.get('challenger')}")
    _, listed = client.request("GET", "/experiments?limit=1")
    experiment = listed["experiments"][0]
    plan = experiment["plan"]
    print(f"  plan ({plan['source']} figures; {len(plan['notes'])} notes on thin history): canary "
          f"{plan['canary_sample']:,} leads (~{plan['canary_days']} days at {plan['weekly_volume']:,.0f} leads a week) "
          f"to catch a quadrupled 1-day bounce rate; A/B {plan['sequential_sample']:,} leads for a "
          f"{plan['mde']:+.0%} lift on {plan['baselines']['positive_reply']:.1%}: "
          f"{'fits' if plan['fits'] else 'does NOT fit'} in {plan['max_runtime_days']:.0f} days; "
          f"warnings: {plan['warnings'] or 'none'}; demo margins {DEMO_EXPERIMENT['margins']}")

    experiments.shift_clock(days=23)  # simulated time: the experiment started 23 days ago
    started = datetime.fromisoformat(client.request("GET", f"/experiments/{experiment['experiment_id']}")[1][
        "started_at"])
    arms: Counter[str] = Counter()
    canary = _route_and_send(client, "canary", int(plan["canary_sample"] * 1.03), started + timedelta(minutes=10),
                             timedelta(seconds=10), arms)
    print(f"canary: GET /route x{len(canary)} (sticky, hashed) -> {dict(arms)}; POST /messages with each route "
          "result, all sent in the canary's first day")
    # the evaluator's daily look on day 3 (the service call ExperimentEvaluatorFunction makes, clock at day 3)
    decided = experiments.evaluate(actor="evaluator", now=started + timedelta(days=3))
    print(f"evaluator on day 3 -> {decided['action']}: {decided['reason']}")

    rng = random.Random(5)  # noqa: S311 - synthetic prospects
    arms = Counter()
    experiments.forget_cache()
    ab = _route_and_send(client, "prospect", 4000, started + timedelta(days=3, hours=1), timedelta(seconds=10), arms)
    print(f"A/B from day 3: GET /route x4000 -> {dict(arms)}; POST /messages with each route result")
    interested = Classification.model_validate({
        "category": "interested", "sentiment_score": 0.7, "interest_level": "high", "objection_type": "none",
        "referral_contact": None, "return_date": None, "confidence": 0.9, "reason": "simulated", "source": "fallback",
        "model": "demo"})
    for message, outcome_id in ab:
        rate = 0.12 if message["route"]["arm"] == "challenger" else 0.03
        if rng.random() < rate:
            store_classification(ReplyJob(outcome_id=UUID(outcome_id), reply_key=f"demo_ab:{outcome_id}",
                                          text="Interested, tell me more",
                                          received_at=datetime.fromisoformat(message["sent_at"]) + timedelta(days=2)),
                                 interested)
    status_code, decision = client.request("POST", "/training/promote-winner", {})
    primary = decision.get("primary") or decision.get("decision", {}).get("primary", {})
    low, high = primary.get("sequential_interval", [None, None])
    rates = primary.get("rates", [0, 0])
    print(f"POST /training/promote-winner -> {status_code}: {decision.get('action', decision.get('message'))}; "
          f"positive-reply rate champion {rates[0]:.1%} vs challenger {rates[1]:.1%}, lift {primary['lift']:+.0%}, "
          f"always-valid 95% interval [{low:+.0%}, {high:+.0%}]")
    guardrails = decision.get("guardrails") or decision.get("decision", {}).get("guardrails", {})
    print(f"  guardrails non-inferior (upper bound below margin): "
          f"{sum(g['non_inferior'] for g in guardrails.values())} of {len(guardrails)}; clear harm: "
          f"{[n for n, g in guardrails.items() if g['harm']] or 'none'}")
    _, history = client.request("GET", f"/experiments/{experiment['experiment_id']}/evaluations")
    print("evaluation history:", ", ".join(f"day {e['days_running']:.0f} {e['action']}"
                                           for e in history["evaluations"]))
    _, models = client.request("GET", "/training/models?status=deployed")
    print("registry now:", ", ".join(f"{m['model_id']} {m['role']} {float(m['traffic_percentage']):.0f}%"
                                     for m in models["models"]))
    return canary + ab


def _engagement(client: LocalClient, sent: list[tuple[dict[str, Any], str]],
                print: Callable[..., None]) -> None:  # noqa: A002
    """The rest of the experiment's outcomes arrive as they would: SendGrid's delivery, bounce, open
    (human and privacy-proxy) and click events through the signed webhook, and the other replies."""
    from flywheel.models.classification import Classification
    from flywheel.models.replies import ReplyJob
    from flywheel.services.replies import store_classification

    signer = SendGridSigner()
    os.environ["WEBHOOK_SECRETS_JSON"] = json.dumps({**DEMO_SECRETS, "sendgrid_public_key": signer.public_key_b64})
    reset_settings()
    rng = random.Random(13)  # noqa: S311 - synthetic data
    now = int(datetime.now(UTC).timestamp())
    events: list[dict[str, Any]] = []
    for message, outcome_id in sent:
        at = int(datetime.fromisoformat(message["sent_at"]).timestamp())
        kinds = ["processed", "bounce" if rng.random() < 0.02 else "delivered"]
        if kinds[-1] == "delivered":
            kinds += ["open:machine"] * (rng.random() < 0.25) + ["open"] * (rng.random() < 0.4) + [
                "click"] * (rng.random() < 0.06)
        for n, kind in enumerate(kinds):
            name, _, flag = kind.partition(":")
            events.append({"email": message["lead_email"], "event": name, "outcome_id": outcome_id,
                           "timestamp": min(now, at + 90 * (n + 1)), "sg_event_id": f"demo-ab-{outcome_id}-{n}",
                           "sg_machine_open": flag == "machine",
                           **({"type": "bounce", "reason": "550 5.1.1 user unknown"} if name == "bounce" else {})})
    statuses = []
    for start in range(0, len(events), 2000):
        body = (json.dumps(events[start:start + 2000]) + "\r\n").encode()
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
        store_classification(ReplyJob(outcome_id=UUID(outcome_id), reply_key=f"demo_ab_other:{outcome_id}",
                                      text="Thanks for reaching out",
                                      received_at=datetime.fromisoformat(message["sent_at"]) + timedelta(hours=20)),
                             Classification.model_validate({
                                 "category": category, "sentiment_score": 0.0, "interest_level": "low",
                                 "objection_type": "none", "referral_contact": None, "return_date": None,
                                 "confidence": 0.8, "reason": "simulated", "model": "demo",
                                 "source": "llm" if rng.random() < 0.6 else "fallback"}))
        replies += 1
    print(f"POST /webhooks/sendgrid x{len(statuses)} ({len(events):,} signed events for the experiment's "
          f"messages) -> {sorted(set(statuses))}; {replies} more replies classified")


def _report(root: Path, org_id: str, print: Callable[..., None]) -> Path:  # noqa: A002
    """The organisation's report, as `flywheel report` writes it, and its essentials as `flywheel status`."""
    from flywheel.services.reports import collect, render_html
    from flywheel.views.status_text import render

    data = collect(org_id)
    print(render(data, color=False).rstrip())
    path = root / ".flywheel" / "demo-report.html"
    path.write_text(render_html(data), encoding="utf-8")
    print(f"report written: {path}")
    return path


def _demo(root: Path, print: Callable[..., None]) -> None:  # noqa: A002 - the demo's own printer
    print("== Flywheel demo (local: embedded PostgreSQL, in-process API) ==")
    url = ensure_local_database(root, database=DEMO_DB, fresh=not os.environ.get("DATABASE_URL"))
    print(f"database ready and migrated: {url.split('?')[0]}")
    server = make_server(root / "template.yaml", "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = LocalClient(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        messages = synthetic_campaign(f"demo-{datetime.now(UTC):%Y%m%d%H%M%S}", 40)
        status, result = client.request("POST", "/messages", {"messages": messages})
        print(f"POST /messages (batch of {len(messages)}) -> {status}: created={result['created']} "
              f"existing={result['existing']}")
        status, again = client.request("POST", "/messages", {"messages": messages})
        print(f"POST /messages again (idempotent) -> {status}: created={again['created']} "
              f"existing={again['existing']}")
        status, bad = client.request("POST", "/messages", {"messages": [{**messages[0], "lead_email": "nope"}]})
        print(f"POST /messages with a bad email -> {status}: {bad['message']}")
        ids = [o["outcome_id"] for o in result["outcomes"]]
        _send_outcomes(client, messages, ids, print)
        _classify_queued_replies(root, print)
        outcomes = [client.request("GET", f"/messages/{outcome_id}?org_id={messages[0]['org_id']}")[1]
                    for outcome_id in ids]
        won = next(o for o in outcomes if o["deal_status"] == "won")
        print(f"GET /messages/{won['outcome_id']} -> stage={won['stage']} label={won['training_label']} "
              f"weight={won['training_weight']} quality={won['quality_score']} events={len(won['events'])}")
        print("funnel (furthest stage per message):", dict(Counter(o["stage"] for o in outcomes).most_common()))
        print("training labels:", dict(Counter(o["training_label"] for o in outcomes).most_common()))
        categories = Counter(o["reply_category"] for o in outcomes if o["reply_category"])
        print("reply categories:", dict(categories.most_common()))
        print(f"replies still waiting on the SQS queue: {_replies_queued()}")
        _train(root, client, print)
        _engagement(client, _experiment(root, client, print), print)
        _report(root, "demo-ab", print)
    finally:
        server.shutdown()
    print("demo finished")
