"""A sender's loop with flywheel.client: route each lead, generate its message with the routed
model, register the messages, then send each with its outcome id. Runs against the local API
(`flywheel start-api`) or a deployed stack, signed with your AWS credentials (locally any values
work, the same ones on both sides):

    .venv/bin/python examples/sender.py --url http://127.0.0.1:8081 --leads 3
    .venv/bin/python examples/sender.py --stack flywheel-dev --org acme

It prints one line per message and the registered outcome ids as JSON on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers" / "flywheel"))  # a plain checkout

from flywheel.client import FlywheelClient, FlywheelError  # noqa: E402


def generate(lead: dict[str, Any], model_id: str) -> dict[str, str]:
    """Stands in for your generator: call the routed model here (Bedrock's Converse with
    `model_id`, or your default model when no model is deployed yet)."""
    return {
        "subject": f"{lead['first_name']}, a faster month-end close at {lead['company']}",
        "body": f"Hi {lead['first_name']},\n\nTeams like {lead['company']} close the books three days faster "
        f"with us. Worth 15 minutes next week?\n\nSam\n\n(written by {model_id})",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--url",
        default=os.environ.get("FLYWHEEL_API_URL", "http://127.0.0.1:8081"),
        help="the API's base URL (default FLYWHEEL_API_URL or http://127.0.0.1:8081)",
    )
    target.add_argument("--stack", help="a deployed stack's name (its ApiUrl output)")
    parser.add_argument("--org", default="acme", help="organisation id (default acme)")
    parser.add_argument("--campaign", default="example-outbound", help="campaign id (default example-outbound)")
    parser.add_argument("--leads", type=positive_int, default=3, help="how many example leads (default 3)")
    args = parser.parse_args()
    try:
        return run(args)
    except (FlywheelError, ValueError) as exc:
        print(f"sender.py: error: {exc}", file=sys.stderr)
        return 1


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number (1 or more)")
    return int(value)


def run(args: argparse.Namespace) -> int:
    client = FlywheelClient.from_stack(args.stack) if args.stack else FlywheelClient(args.url)
    leads = [
        {
            "lead_id": f"example-{i}",
            "email": f"lead{i}@prospect.example",
            "first_name": f"Lead{i}",
            "company": f"Prospect {i}",
            "industry": "fintech",
            "role": "cfo",
        }
        for i in range(args.leads)
    ]
    messages = []
    for lead in leads:
        routed = client.route(args.org, lead["lead_id"])  # None until a model is deployed
        # what to invoke: a Bedrock custom model's own ARN is refused by InvokeModel; null while a
        # restored model's deployment is being re-created
        model_id = (routed and routed["model"]["serving_model_id"]) or "your-default-model"
        message = generate(lead, model_id)
        messages.append(
            {
                "org_id": args.org,
                "campaign_id": args.campaign,
                "lead_id": lead["lead_id"],
                "lead_email": lead["email"],
                "subject": message["subject"],
                "body": message["body"],
                "sent_at": datetime.now(UTC),
                "model_id": model_id,
                "route": client.route_info(routed) if routed else None,
                "lead": {
                    "first_name": lead["first_name"],
                    "company": lead["company"],
                    "industry": lead["industry"],
                    "role": lead["role"],
                },
            }
        )
        print(f"{lead['lead_id']}: {routed['arm'] if routed else 'no model yet'} -> {model_id}", file=sys.stderr)
    outcomes = client.register(messages)  # batched, idempotent, retried on throttling
    for message, outcome in zip(messages, outcomes, strict=True):
        # send it now, with the outcome id where the webhooks look for it: SendGrid
        # custom_args {"outcome_id": ...}, reply-to reply+<outcome_id>@<your parse domain>,
        # utm_content=<outcome_id> on the booking link
        print(f"send to {message['lead_email']} with outcome id {outcome['outcome_id']}", file=sys.stderr)
    print(
        json.dumps(
            {"registered": [o["outcome_id"] for o in outcomes], "created": sum(1 for o in outcomes if o["created"])}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
