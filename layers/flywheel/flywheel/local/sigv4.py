"""What API Gateway's AWS_IAM authorizer checks, done locally by `flywheel start-api`.

A request to an IAM route must carry a complete SigV4 `Authorization` header for the
`execute-api` service, an `X-Amz-Date` within 5 minutes of now, and a signature that matches
the request when recomputed with the secret of its access key. Locally there is no IAM: the
keys the server knows are those of its own credential chain (the AWS_* variables, the shared
credentials file, ...), resolved when it starts; any other key is refused as AWS refuses an
unknown one. Each refusal is a 403 with API Gateway's message and `x-amzn-ErrorType`.
There are no IAM policies locally: a known key may call every route.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.session import Session

SERVICE = "execute-api"
MAX_SKEW_S = 300
_AUTH = re.compile(r"^AWS4-HMAC-SHA256\s+(.*)$", re.S)
_DATE = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class AuthFailure:
    error_type: str
    message: str
    status: int = 403


@dataclass(frozen=True)
class Caller:
    access_key: str


class _Recompute(SigV4Auth):
    """botocore's SigV4 signer, fed the signed-header list and query the client used."""

    def __init__(self, credentials: Credentials, region: str, signed: list[str]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest):  # type: ignore[no-untyped-def]
        headers = super().headers_to_sign(request)
        for name in list(headers.keys()):
            if name not in self._signed:
                del headers[name]
        return headers

    def canonical_query_string(self, request: AWSRequest) -> str:
        # AWS decodes each name and value and encodes it again (RFC 3986), then sorts
        query = str(urlsplit(str(request.url)).query)
        pairs = [p.partition("=") for p in query.split("&") if p] if query else []
        encoded = sorted((quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~")) for k, _, v in pairs)
        return "&".join(f"{k}={v}" for k, v in encoded)


class SigV4Verifier:
    def __init__(self, keys: dict[str, ReadOnlyCredentials], now: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.now = now

    @classmethod
    def from_credential_chain(cls) -> SigV4Verifier:
        credentials = Session().get_credentials()
        if credentials is None:
            return cls({})
        frozen = credentials.get_frozen_credentials()
        return cls({frozen.access_key: frozen} if frozen.access_key and frozen.secret_key else {})

    def check(self, method: str, raw_path: str, headers: dict[str, list[str]], body: bytes) -> Caller | AuthFailure:
        lowered = {k.lower(): v[-1] for k, v in headers.items()}
        authorization = lowered.get("authorization")
        if not authorization:
            return AuthFailure("MissingAuthenticationTokenException", "Missing Authentication Token")
        found = _AUTH.match(authorization.strip())
        parts = dict(p.strip().partition("=")[::2] for p in found.group(1).split(",")) if found else {}
        missing = [n for n in ("Credential", "SignedHeaders", "Signature") if not parts.get(n)]
        if not found or missing:
            return AuthFailure(
                "IncompleteSignatureException",
                " ".join(f"Authorization header requires '{n}' parameter." for n in missing or ["Credential"])
                + f" Authorization={authorization[:40]}",
            )
        scope = parts["Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            return AuthFailure("IncompleteSignatureException", f"Credential is malformed: {parts['Credential']}")
        access_key, day, region, service = scope[:4]
        if service != SERVICE:
            return AuthFailure(
                "InvalidSignatureException", f"Credential should be scoped to correct service: '{SERVICE}'."
            )
        amz_date = lowered.get("x-amz-date")
        if not amz_date:
            return AuthFailure(
                "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            )
        try:
            signed_at = datetime.strptime(amz_date, _DATE).replace(tzinfo=UTC).timestamp()
        except ValueError:
            return AuthFailure("IncompleteSignatureException", f"Date must be in ISO-8601 'basic format': {amz_date}")
        expiry = self._expiry(signed_at, amz_date)
        if expiry:
            return expiry
        if not amz_date.startswith(day):
            return AuthFailure(
                "InvalidSignatureException",
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                f"from HTTP: '{day}' != '{amz_date[:8]}', from '{amz_date}'.",
            )
        signed = [h.strip().lower() for h in parts["SignedHeaders"].split(";")]
        if "host" not in signed:
            return AuthFailure("InvalidSignatureException", "'Host' must be a signed header.")
        known = self.keys.get(access_key)
        if known is None or (known.token and lowered.get("x-amz-security-token") != known.token):
            return AuthFailure("UnrecognizedClientException", "The security token included in the request is invalid.")
        request = AWSRequest(
            method=method,
            url=f"http://{lowered.get('host', '')}{raw_path}",
            data=body,
            headers={k: v for k, v in lowered.items() if k in signed},
        )
        request.context["timestamp"] = amz_date
        signer = _Recompute(Credentials(access_key, known.secret_key or "", known.token), region, signed)
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        if not hmac.compare_digest(expected, parts["Signature"]):
            return AuthFailure(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service "
                "documentation for details.",
            )
        return Caller(access_key)

    def _expiry(self, signed_at: float, amz_date: str) -> AuthFailure | None:
        now = self.now()
        fmt = lambda t: datetime.fromtimestamp(t, UTC).strftime(_DATE)  # noqa: E731
        if signed_at < now - MAX_SKEW_S:
            return AuthFailure(
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is now earlier than {fmt(now - MAX_SKEW_S)} ({fmt(now)} - 5 min.)",
            )
        if signed_at > now + MAX_SKEW_S:
            return AuthFailure(
                "InvalidSignatureException",
                f"Signature not yet current: {amz_date} is still later "
                f"than {fmt(now + MAX_SKEW_S)} ({fmt(now)} + 5 min.)",
            )
        return None
