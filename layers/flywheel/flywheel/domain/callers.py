"""Which organisations an API caller may act for (API_CALLER_ORGS_JSON, README "Tenancy").

API Gateway's IAM authorisation checks only the method and the resource path: every org_id a caller
passes (query string, body) is the same IAM resource. So the organisations an IAM principal may name
are mapped here, and the API glue (flywheel.api) refuses a request that names any other.

A principal is named by its account and its role (or user) name: an assumed role reaches the Lambda as
`arn:aws:sts::<account>:assumed-role/<role>/<session>`, which drops the role's path, so a mapping key
`arn:aws:iam::<account>:role/<path>/<role>` matches by account and name (IAM role and user names are
unique in an account, whatever their path). IAM names are also unique whatever their case (no
`Acme-Sender` beside an `acme-sender`), so names are compared case-insensitively. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from flywheel.domain.inputs import IDENTIFIER, strict_json

ALL = "*"  # every organisation, and the platform routes (training, models, experiments)

# IAM's own limits (CreateRole / CreateUser: RoleName and UserName 1-64 of [\w+=,.@-], ASCII; Path
# "/" or 1-512 characters of "/" + printable ASCII + "/"). A path is kept to what JSON text carries
# without an escape (no `"` or `\`), so that the template's AllowedPattern, which sees the JSON text,
# can say the same. The parameter ApiCallerOrgs in template.yaml repeats KEY (tests/unit/test_caller_orgs.py
# checks that the two agree).
NAME = r"[A-Za-z0-9_+=,.@-]{1,64}"
# what follows `role/` or `user/` before the name: the path without its leading slash (<= 511 characters)
PATH = r"(?:[!#-\[\]-~]{1,510}/)?"
KEY = r"arn:aws[a-z-]*:iam::[0-9]{12}:(?:role|user)/" + PATH + NAME
# a mapping key: an IAM role or user, with or without its path (fullmatch: no trailing newline)
_IAM_PRINCIPAL = re.compile(
    rf"arn:(?P<partition>aws[a-z-]*):iam::(?P<account>[0-9]{{12}}):(?P<kind>role|user)/{PATH}(?P<name>{NAME})"
)
# what API Gateway puts in requestContext.identity.userArn for a caller signing with a role's session
_ASSUMED_ROLE = re.compile(
    rf"arn:(?P<partition>aws[a-z-]*):sts::(?P<account>[0-9]{{12}}):assumed-role/(?P<name>{NAME})/[^/\s]+"
)


def principal_key(arn: str) -> str | None:
    """The principal an ARN names, as `arn:<partition>:iam::<account>:<role|user>/<name>` (no path):
    a role or user ARN (a mapping key, or an IAM user's userArn) or an assumed-role session ARN (a
    role's caller). The name is lower-cased: IAM takes `Acme-Sender` and `acme-sender` for one role.
    None for anything else (the account root, a federated user, nothing)."""
    found = _IAM_PRINCIPAL.fullmatch(arn or "")
    if found:
        return f"arn:{found['partition']}:iam::{found['account']}:{found['kind']}/{found['name'].lower()}"
    found = _ASSUMED_ROLE.fullmatch(arn or "")
    if found:
        return f"arn:{found['partition']}:iam::{found['account']}:role/{found['name'].lower()}"
    return None


def parse_caller_orgs(text: str | None) -> dict[str, frozenset[str]]:
    """API_CALLER_ORGS_JSON: a JSON object of IAM role or user ARN -> a list of org_ids, or ["*"].
    Empty (unset, "", JSON's whitespace alone, "{}"): no mapping. ValueError names what is wrong by
    key number, never a key or an organisation."""
    if not (text or "").strip(" \t\n\r"):  # JSON's whitespace, as the template's pattern
        return {}
    parsed: Any = strict_json(text or "")
    if not isinstance(parsed, dict):
        raise ValueError('must be a JSON object, e.g. {"arn:aws:iam::<account>:role/<name>": ["<org_id>"]}')
    mapping: dict[str, frozenset[str]] = {}
    first_key: dict[str, int] = {}
    for number, (key, orgs) in enumerate(parsed.items(), start=1):
        principal = principal_key(key) if _IAM_PRINCIPAL.fullmatch(key) else None
        if principal is None:
            raise ValueError(
                f"key {number} is not an IAM role or user ARN (arn:aws:iam::<account>:role/<name>, "
                f"arn:aws:iam::<account>:user/<name>, with or without a path; IAM's names: 1-64 of letters, "
                "digits and _+=,.@-; a path: 1-512 characters of printable ASCII but quotes and backslashes)"
            )
        if principal in first_key:
            raise ValueError(
                f"keys {first_key[principal]} and {number} name the same principal "
                "(a role or user is matched by account and name, whatever its path and case)"
            )
        if (
            not isinstance(orgs, list)
            or not orgs
            or not all(isinstance(o, str) and (o == ALL or IDENTIFIER.fullmatch(o)) for o in orgs)
        ):
            raise ValueError(
                f'the value of key {number} is not a non-empty list of org_ids (letters, digits, _.:@/+-) or ["*"]'
            )
        first_key[principal] = number
        mapping[principal] = frozenset(orgs)
    return mapping


def requested_orgs(arguments: Mapping[str, Any]) -> set[str]:
    """Every org_id a request names, from its validated arguments: an `org_id` parameter (query
    string) and any `org_id` field of a body model, however deep (each message of a batch)."""
    found: set[str] = set()
    for name, value in arguments.items():
        _collect(name, value, found)
    return found


def _collect(name: str, value: Any, found: set[str]) -> None:
    if name == "org_id" and isinstance(value, str):
        found.add(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(name, item, found)
    elif hasattr(type(value), "model_fields"):  # a pydantic model (the domain does not import pydantic)
        for field in type(value).model_fields:
            _collect(field, getattr(value, field, None), found)


def refusal(mapping: Mapping[str, frozenset[str]], user_arn: str | None, orgs: Iterable[str]) -> str | None:
    """Why this caller may not make a request naming `orgs` (none: a platform route), or None when
    it may. Only for a non-empty mapping (an empty one lets every caller pass any org_id)."""
    wanted = set(orgs)
    return refusal_before_validation(mapping, user_arn, org_scoped=bool(wanted), named=wanted)


def refusal_before_validation(
    mapping: Mapping[str, frozenset[str]], user_arn: str | None, *, org_scoped: bool, named: Iterable[Any]
) -> str | None:
    """The caller check made before the request is validated (authorisation first, as API Gateway's
    IAM authoriser, so a caller learns nothing of a route's inputs that it may not call): a caller
    the mapping does not name, or a caller not mapped to "*" on a platform route (`org_scoped`
    False), is refused whatever it sent; another caller is refused when any org_id it `named` (read
    from the raw query string and body; non-strings and blank strings are not readable ids and are
    left to validation) is not one of its organisations. A value is compared as validation will
    read it: without surrounding whitespace (the body models strip it, so " acme" is stored as
    acme). str.strip() removes what pydantic strips and a few control characters more (U+001C-1F),
    which can never turn another organisation's id into an allowed one: a value that still holds
    them fails validation (an org_id is an IDENTIFIER). None: validation decides next."""
    principal = principal_key(user_arn or "")
    if principal is None:
        return "the request carries no IAM role or user this API maps to organisations (API_CALLER_ORGS_JSON)"
    allowed = mapping.get(principal)
    if allowed is None:
        return f"{principal} may act for no organisation (it is not in API_CALLER_ORGS_JSON)"
    if ALL in allowed:
        return None
    if not org_scoped:
        return f'{principal} may not call the platform routes (only a caller mapped to ["*"] may)'
    refused = sorted({org for org in named if isinstance(org, str) and org.strip() and org.strip() not in allowed})
    if refused:
        shown = [org if IDENTIFIER.fullmatch(org) else _quoted(org) for org in refused[:MAX_NAMED]]
        more = f" and {len(refused) - MAX_NAMED} more" if len(refused) > MAX_NAMED else ""
        return f"{principal} may not act for organisation {', '.join(shown)}{more}"
    return None


# a refusal names at most this many organisations (a batch of 500 messages may name 500)
MAX_NAMED = 20


def _quoted(org: str) -> str:
    """A requested org_id that is not an identifier, shown short and JSON-quoted (it may hold anything)."""
    return json.dumps(org[:40] + ("..." if len(org) > 40 else ""))


def values_at(document: Any, paths: Iterable[tuple[str, ...]]) -> list[Any]:
    """The values found at each path of a parsed JSON document, a path being object keys and "*"
    (every item of an array); a path that does not fit the document (a missing key, a string where
    an object was expected) finds nothing. Reads where a request body names its org_id before the
    body is validated: only along its model's own org_id fields, never a free-form field (a message's
    `agent_decisions` or `lead.extra` may hold any key)."""
    found: list[Any] = []
    for path in paths:
        _walk(document, path, found)
    return found


def _walk(node: Any, path: tuple[str, ...], found: list[Any]) -> None:
    if not path:
        found.append(node)
    elif path[0] == "*":
        if isinstance(node, list):
            for item in node:
                _walk(item, path[1:], found)
    elif isinstance(node, dict) and path[0] in node:
        _walk(node[path[0]], path[1:], found)
