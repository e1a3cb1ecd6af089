"""S3: where datasets, their manifests and the providers' outputs live."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flywheel.clients.aws import client


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
    client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(value, indent=2, default=str).encode(),
                            ContentType="application/json")
    return uri


def download_file(uri: str, path: Path) -> Path:
    bucket, key = split_uri(uri)
    client("s3").download_file(bucket, key, str(path))
    return path
