"""Checking a dataset before upload: format rules, token counts, totals and cost."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

ROLES = {"system", "user", "assistant"}
# Training tokens per example each base model accepts (context length of the training job).
DEFAULT_EXAMPLE_TOKEN_LIMITS = {
    "gpt-4o-mini-2024-07-18": 65_536, "gpt-4o-2024-08-06": 65_536, "gpt-4.1-mini-2025-04-14": 65_536,
    "gpt-4.1-2025-04-14": 65_536, "gpt-4.1-nano-2025-04-14": 65_536,
    "amazon.nova-micro-v1:0:128k": 32_000, "amazon.nova-lite-v1:0:300k": 32_000, "amazon.nova-pro-v1:0:300k": 32_000,
}
# USD per million training tokens (per epoch); override with TRAINING_PRICES_JSON.
DEFAULT_PRICES = {
    "gpt-4o-mini-2024-07-18": 3.0, "gpt-4o-2024-08-06": 25.0, "gpt-4.1-mini-2025-04-14": 5.0,
    "gpt-4.1-2025-04-14": 25.0, "gpt-4.1-nano-2025-04-14": 1.5,
    "amazon.nova-micro-v1:0:128k": 1.0, "amazon.nova-lite-v1:0:300k": 2.0, "amazon.nova-pro-v1:0:300k": 8.0,
}


@cache
def _encoding() -> Any:
    try:
        import tiktoken

        return tiktoken.get_encoding("o200k_base")
    except Exception:  # no tiktoken, or its encoding file cannot be downloaded here
        return None


def token_counter() -> tuple[Callable[[str], int], str]:
    """A token counter and how it counts: `o200k_base`, or a conservative estimate."""
    encoding = _encoding()
    if encoding is not None:
        return (lambda text: len(encoding.encode(text))), "tiktoken:o200k_base"
    # ~3 bytes a token over-counts English (≈4 chars a token), so limits are checked safely
    return (lambda text: math.ceil(len(text.encode("utf-8")) / 3)), "estimate:utf8_bytes/3"


def _texts(example: dict[str, Any]) -> list[str]:
    if "messages" in example and isinstance(example["messages"], list):
        return [_text(m) for m in example["messages"]]
    if "input" in example:
        return ([_text(m) for m in example["input"].get("messages", [])]
                + [_text(m) for m in example.get("preferred_output", []) + example.get("non_preferred_output", [])])
    return []


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # bedrock-conversation-2024: [{"text": ...}]
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def _check_chat(messages: Any, where: str) -> list[str]:
    if not isinstance(messages, list) or not messages:
        return [f"{where}: messages must be a non-empty list"]
    errors = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            errors.append(f"{where}[{i}]: role must be one of {sorted(ROLES)}")
            continue
        if not _text(m).strip():
            errors.append(f"{where}[{i}]: empty content")
        if set(m) - {"role", "content", "weight", "name"}:
            errors.append(f"{where}[{i}]: unexpected keys {sorted(set(m) - {'role', 'content', 'weight', 'name'})}")
        if "weight" in m and m["weight"] not in (0, 1):
            errors.append(f"{where}[{i}]: weight must be 0 or 1")
    return errors


def check_example(example: Any, fmt: str) -> list[str]:
    """Format problems of one line, in the shape the provider expects (empty when fine)."""
    if not isinstance(example, dict):
        return ["line is not a JSON object"]
    if fmt == "supervised":
        errors = _check_chat(example.get("messages"), "messages")
        roles = [m.get("role") for m in example.get("messages") or [] if isinstance(m, dict)]
        if "assistant" not in roles:
            errors.append("no assistant turn")
        elif roles[-1] != "assistant":
            errors.append("the last message must be the assistant's")
        return errors
    if fmt == "dpo":
        errors = _check_chat((example.get("input") or {}).get("messages"), "input.messages")
        for key in ("preferred_output", "non_preferred_output"):
            output = example.get(key)
            if not isinstance(output, list) or len(output) != 1 or output[0].get("role") != "assistant":
                errors.append(f"{key} must be exactly one assistant message")
            else:
                errors += _check_chat(output, key)
        return errors
    if fmt == "bedrock-conversation-2024":
        if example.get("schemaVersion") != "bedrock-conversation-2024":
            return ["schemaVersion must be bedrock-conversation-2024"]
        messages = example.get("messages") or []
        roles = [m.get("role") for m in messages if isinstance(m, dict)]
        errors = _check_chat(messages, "messages")
        if not roles or roles[0] != "user" or roles[-1] != "assistant" or any(
                a == b for a, b in zip(roles, roles[1:], strict=False)):
            errors.append("messages must alternate user/assistant, starting with user and ending with assistant")
        return errors
    return [f"unknown format {fmt!r}"]


@dataclass
class DatasetReport:
    examples: int = 0
    invalid: int = 0
    over_limit: int = 0
    total_tokens: int = 0
    max_tokens: int = 0
    min_tokens: int = 0
    token_method: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def mean_tokens(self) -> float:
        return round(self.total_tokens / self.examples, 1) if self.examples else 0.0

    @property
    def ok(self) -> bool:
        return self.invalid == 0 and self.over_limit == 0

    def as_dict(self) -> dict[str, Any]:
        return {"examples": self.examples, "invalid": self.invalid, "over_limit": self.over_limit,
                "total_tokens": self.total_tokens, "min_tokens": self.min_tokens, "max_tokens": self.max_tokens,
                "mean_tokens": self.mean_tokens, "token_method": self.token_method, "errors": self.errors[:20]}


def check_lines(lines: Iterable[str], fmt: str, token_limit: int) -> DatasetReport:
    """Check a JSONL stream line by line (memory stays flat)."""
    count, method = token_counter()
    report = DatasetReport(token_method=method)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        report.examples += 1
        try:
            example = json.loads(line)
        except ValueError:
            report.invalid += 1
            report.errors.append(f"line {number}: not JSON")
            continue
        problems = check_example(example, fmt)
        if problems:
            report.invalid += 1
            report.errors += [f"line {number}: {p}" for p in problems]
        tokens = sum(count(t) + 4 for t in _texts(example))  # +4: each message's role and framing
        if tokens > token_limit:
            report.over_limit += 1
            report.errors.append(f"line {number}: {tokens} tokens is over the limit of {token_limit}")
        report.total_tokens += tokens
        report.max_tokens = max(report.max_tokens, tokens)
        report.min_tokens = tokens if report.examples == 1 else min(report.min_tokens, tokens)
    return report


def cost_estimate(total_tokens: int, base_model: str, epochs: int, prices: dict[str, float]) -> dict[str, Any]:
    price = prices.get(base_model)
    billed = total_tokens * epochs
    return {"base_model": base_model, "epochs": epochs, "billed_tokens": billed,
            "usd_per_million_tokens": price, "usd": round(billed / 1e6 * price, 2) if price is not None else None}
