"""S3: where datasets, their manifests and the providers' outputs live."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from flywheel.clients.aws import client
from flywheel.errors import DependencyUnavailable


def split_uri(uri: str) -> tuple[str, str]:
    assert uri.startswith("s3://"), uri
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def upload_file(path: Path, uri: str) -> str:
    bucket, key = split_uri(uri)
    client("s3").upload_file(str(path), bucket, key)
    return uri


def put_json(uri: str, value: Any) -> str:
    bucket, key = split_uri(uri)
    client("s3").put_object(
        Bucket=bucket, Key=key, Body=json.dumps(value, indent=2, default=str).encode(), ContentType="application/json"
    )
    return uri


def download_file(uri: str, path: Path) -> Path:
    bucket, key = split_uri(uri)
    client("s3").download_file(bucket, key, str(path))
    return path


def put_bytes(uri: str, body: bytes, content_type: str) -> str:
    bucket, key = split_uri(uri)
    try:
        client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    except (BotoCoreError, ClientError) as exc:
        raise DependencyUnavailable("S3 refused the object", reason=str(exc)) from exc
    return uri


def head(uri: str) -> dict[str, Any] | None:
    """The object's metadata, or None when there is no such object."""
    bucket, key = split_uri(uri)
    try:
        return dict(client("s3").head_object(Bucket=bucket, Key=key))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise DependencyUnavailable("S3 unavailable", reason=str(exc)) from exc
    except BotoCoreError as exc:
        raise DependencyUnavailable("S3 unavailable", reason=str(exc)) from exc


def presigned_get(uri: str, expires_in: int) -> str:
    """A link that reads the object without credentials until it expires (signed locally, no call).

    Signature Version 4: buckets created since June 2020 refuse SigV2 links, which botocore may
    still produce by default (S3 docs, "Authenticating Requests: Using Query Parameters" / SigV2
    deprecation). A link signed with a Lambda role's session also dies when that session does."""
    bucket, key = split_uri(uri)
    return str(
        client("s3", "s3v4").generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
        )
    )
