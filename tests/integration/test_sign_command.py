"""`flywheel sign` against our own verifiers: the curl command it prints, run as printed, is
accepted by the local API for every provider; a changed body is refused; the headers it prints
verify; the signed event it prints passes the handler unchanged."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flywheel import cli
from flywheel.local.invoke import invoke
from flywheel.local.secrets import local_secrets
from flywheel.local.server import make_server
from flywheel.local.stack import LocalStack
from flywheel.webhooks import signatures
from tests.conftest import EVENTS, ROOT

SAMPLES = {
    "sendgrid": "webhooks_sendgrid_events.json",
    "sendgrid-inbound": "webhooks_sendgrid_inbound_parsed.json",
    "calendly": "webhooks_calendly_invitee_created.json",
    "hubspot": "webhooks_hubspot_deal_won.json",
    "pipedrive": "webhooks_pipedrive_deal_won.json",
    "salesforce": "webhooks_salesforce_opportunity_won.json",
    "crm-deals": "webhooks_crm_deal_won.json",
    "crm-meetings": "webhooks_crm_meeting_booked.json",
}
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@pytest.fixture
def local_api(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    for key in ("WEBHOOK_SECRETS_JSON", "WEBHOOK_SECRETS_ARN", "PROVIDER_ORGS_JSON", "INBOUND_PARSE_DOMAINS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("FLYWHEEL_STATE_DIR", str(tmp_path))
    with LocalStack(ROOT, state=tmp_path, log=lambda line: None):
        server = make_server(ROOT / "template.yaml", "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
        finally:
            server.shutdown()
            server.server_close()


def sign(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert cli.main(["sign", *args]) == 0
    return capsys.readouterr().out.strip()


def run_curl(command: str) -> tuple[int, str]:
    done = subprocess.run(
        ["bash", "-c", command + " -o /dev/stderr -w '%{http_code}'"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout), done.stderr


@needs_curl
@pytest.mark.parametrize("provider", sorted(SAMPLES))
def test_the_printed_curl_command_is_accepted(
    provider: str, local_api: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, _ = local_api
    command = sign(capsys, provider, str(EVENTS / SAMPLES[provider]), "--curl", "--url", base)
    assert command.startswith("curl ")
    status, body = run_curl(command)
    assert status == 200, body


@needs_curl
def test_a_changed_body_is_refused(
    local_api: tuple[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base, _ = local_api
    body = tmp_path / "calendly.json"
    body.write_text(json.loads((EVENTS / SAMPLES["calendly"]).read_text())["body"])
    command = sign(capsys, "calendly", str(body), "--curl", "--url", base)
    body.write_text(body.read_text().replace("Dana Reyes", "Mallory"))
    status, answer = run_curl(command)
    assert status == 401 and "signature does not match" in answer


def test_printed_headers_verify_with_our_verifiers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLYWHEEL_STATE_DIR", str(tmp_path))
    body_file = tmp_path / "body.json"
    body = b'[{"eventId": 1, "portalId": 5799819, "subscriptionType": "deal.propertyChange"}]'
    body_file.write_bytes(body)
    secrets = local_secrets(tmp_path)
    url = "https://abc123.execute-api.us-east-1.amazonaws.com/dev"

    def headers(provider: str) -> dict[str, str]:
        text = sign(capsys, provider, str(body_file), "--url", url)
        return {k.lower(): v for k, v in (line.split(": ", 1) for line in text.splitlines())}

    signatures.verify_sendgrid(
        secrets["sendgrid_public_key"],
        headers("sendgrid")["x-twilio-email-event-webhook-signature"],
        headers("sendgrid")["x-twilio-email-event-webhook-timestamp"],
        body,
    )
    signatures.verify_calendly(secrets["calendly_signing_key"], headers("calendly")["calendly-webhook-signature"], body)
    signatures.verify_hubspot(
        secrets["hubspot_client_secret"],
        method="POST",
        uri=f"{url}/webhooks/crm/hubspot",
        body=body,
        headers=headers("hubspot"),
    )
    signatures.verify_standard_webhooks(secrets["crm_webhook_secret"], headers("crm-deals"), body)
    signatures.verify_basic_auth(
        headers("pipedrive")["authorization"], secrets["pipedrive_username"], secrets["pipedrive_password"]
    )
    with pytest.raises(signatures.SignatureInvalid):
        signatures.verify_calendly(
            secrets["calendly_signing_key"], headers("calendly")["calendly-webhook-signature"], body + b" "
        )


def test_the_signed_event_passes_the_handler_as_is(
    local_api: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    signed = json.loads(sign(capsys, "crm-deals", str(EVENTS / SAMPLES["crm-deals"]), "--event"))
    assert signed["headers"]["webhook-id"] == "msg_2Qv0deal991"  # the sample's id is kept
    assert invoke("WebhooksFunction", signed, ROOT / "template.yaml")["statusCode"] == 200
    unsigned = json.loads((EVENTS / SAMPLES["crm-deals"]).read_text())
    assert invoke("WebhooksFunction", unsigned, ROOT / "template.yaml")["statusCode"] == 401


def test_a_multipart_body_without_its_boundary_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLYWHEEL_STATE_DIR", str(tmp_path))
    (tmp_path / "reply.txt").write_text("not multipart")
    assert cli.main(["sign", "sendgrid-inbound", str(tmp_path / "reply.txt")]) == 2
    assert "must start with --<boundary>" in capsys.readouterr().err


def test_sign_picks_an_organisations_credential_when_there_is_one_per_organisation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLYWHEEL_STATE_DIR", str(tmp_path))
    secrets: dict[str, Any] = dict(local_secrets(tmp_path, announce=lambda line: None))
    secrets["salesforce_token"] = {"acme": "sf-acme-local", "globex": "sf-globex-local"}
    secrets["pipedrive_username"] = {"acme": "pd-acme", "globex": "pd-globex"}
    secrets["pipedrive_password"] = {"acme": "pw-acme", "globex": "pw-globex"}
    (tmp_path / "secrets.json").write_text(json.dumps(secrets))
    sample = str(EVENTS / SAMPLES["salesforce"])
    assert "/webhooks/crm/salesforce/sf-globex-local" in sign(capsys, "salesforce", sample, "--org", "globex", "--curl")
    event = json.loads(sign(capsys, "pipedrive", str(EVENTS / SAMPLES["pipedrive"]), "--org", "acme", "--event"))
    signatures.verify_basic_auth(event["headers"]["Authorization"], "pd-acme", "pw-acme")
    # without --org (or with an organisation that has none) it says which to name, never a value
    assert cli.main(["sign", "salesforce", sample]) == 2
    error = capsys.readouterr().err
    assert "salesforce_token holds one value per organisation (acme, globex): name one with --org" in error
    assert cli.main(["sign", "salesforce", sample, "--org", "initech"]) == 2
    error = capsys.readouterr().err
    assert "has no value for organisation 'initech'" in error and "sf-acme-local" not in error
    # a provider whose credential is one value signs as before, --org or not
    assert "Calendly-Webhook-Signature: t=" in sign(
        capsys, "calendly", str(EVENTS / SAMPLES["calendly"]), "--org", "globex"
    )
