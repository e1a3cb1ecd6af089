"""Answering a CloudFormation custom resource request: one PUT of a JSON document to the
pre-signed S3 URL in the request (`ResponseURL`). CloudFormation waits for it (up to an hour), so
it must be sent on every path, failures included.

https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from flywheel.errors import DependencyUnavailable

# the whole response body may not exceed 4,096 bytes; the reason is what gets cut
MAX_BODY_BYTES = 4096


def response_body(
    request: dict[str, Any], status: str, physical_id: str, reason: str, data: dict[str, str] | None = None
) -> bytes:
    body = {
        "Status": status,
        "PhysicalResourceId": physical_id,
        "StackId": request["StackId"],
        "RequestId": request["RequestId"],
        "LogicalResourceId": request["LogicalResourceId"],
        "NoEcho": False,
        "Data": data or {},
        "Reason": reason,
    }
    encoded = json.dumps(body).encode()
    while len(encoded) > MAX_BODY_BYTES:
        body["Reason"] = body["Reason"][: len(body["Reason"]) - (len(encoded) - MAX_BODY_BYTES) - 20] + " [...]"
        encoded = json.dumps(body).encode()
    return encoded


def send_response(
    request: dict[str, Any],
    status: str,
    physical_id: str,
    reason: str,
    data: dict[str, str] | None = None,
    attempts: int = 3,
) -> None:
    body = response_body(request, status, physical_id, reason, data)
    url = str(request["ResponseURL"])
    if not url.startswith(("https://", "http://")):
        raise ValueError("ResponseURL is not an HTTP(S) URL")
    # the URL is pre-signed for an empty Content-Type: any other value breaks the signature
    put = urllib.request.Request(  # noqa: S310
        url,
        data=body,
        method="PUT",  # noqa: S310 - scheme checked above
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(put, timeout=10) as answer:  # noqa: S310
                if answer.status < 300:
                    return
        except OSError as exc:
            if attempt == attempts - 1:
                raise DependencyUnavailable("could not answer CloudFormation", reason=str(exc)) from exc
        time.sleep(0.5 * (attempt + 1))
    raise DependencyUnavailable("CloudFormation's response URL refused the answer")
