"""Checking a dataset before upload: each provider's format and documented limits, token counts
over every part of a record, totals and cost."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from flywheel.domain.dataset import NOVA_RESERVED

ROLES = {"system", "user", "assistant"}
# the four line shapes; the old names stay accepted
CHECK_FORMATS = ("openai-sft", "openai-dpo", "nova-sft", "nova-dpo")
FORMAT_ALIASES = {
    "supervised": "openai-sft",
    "dpo": "openai-dpo",
    "bedrock-conversation-2024": "nova-sft",
    "bedrock-preference": "nova-dpo",
}
MB = 1024 * 1024


@dataclass(frozen=True)
class ModelLimits:
    """What a provider documents for fine-tuning one base model."""

    provider: str  # openai | bedrock
    example_tokens: int  # one record, every part counted
    min_train: int
    max_records: int | None  # training + validation records
    validation: bool  # whether a validation file may be given
    max_train_bytes: int
    max_validation_bytes: int
    methods: frozenset[str]  # what the provider's fine-tuning job runs for this model
    regions: tuple[str, ...] = ()  # where the provider runs the job (empty: not region-bound)
    usd_per_million: float | None = None  # training price per million tokens (per epoch)


# OpenAI: at least 10 examples and a training example context of 65,536 tokens for the GPT-4o and
# GPT-4.1 families (https://platform.openai.com/docs/guides/supervised-fine-tuning, "Token limits";
# https://learn.microsoft.com/azure/ai-foundry/openai/concepts/models#fine-tuning-models lists the same
# "training example context length: 65,536"); every file up to 512 MB
# (https://platform.openai.com/docs/api-reference/files/create); DPO on the same models
# (https://platform.openai.com/docs/guides/direct-preference-optimization).
_OPENAI = ModelLimits(
    provider="openai",
    example_tokens=65_536,
    min_train=10,
    max_records=None,
    validation=True,
    max_train_bytes=512 * MB,
    max_validation_bytes=512 * MB,
    methods=frozenset({"supervised", "dpo"}),
)
# Amazon Nova on Bedrock: 8-20,000 records for Micro, Lite and Pro (the dataset validator that
# https://docs.aws.amazon.com/nova/latest/userguide/customize-fine-tune-prepare.html links to), a
# 32k-token record, training file up to 1 GB and validation up to 100 MB
# (https://docs.aws.amazon.com/bedrock/latest/userguide/model-training-validation-requirements.html),
# supervised fine-tuning only: DPO for Nova runs on SageMaker AI, not Bedrock ("Parameter-efficient
# fine-tuning Direct Preference Optimization: Amazon Bedrock No" in
# https://docs.aws.amazon.com/nova/latest/userguide/customization.html), and only in us-east-1
# (https://docs.aws.amazon.com/bedrock/latest/userguide/custom-model-fine-tuning.html).
_NOVA = ModelLimits(
    provider="bedrock",
    example_tokens=32_000,
    min_train=8,
    max_records=20_000,
    validation=True,
    max_train_bytes=1024 * MB,
    max_validation_bytes=100 * MB,
    methods=frozenset({"supervised"}),
    regions=("us-east-1",),
)
MODEL_LIMITS: dict[str, ModelLimits] = {
    "gpt-4o-mini-2024-07-18": replace(_OPENAI, usd_per_million=3.0),
    "gpt-4o-2024-08-06": replace(_OPENAI, usd_per_million=25.0),
    "gpt-4.1-mini-2025-04-14": replace(_OPENAI, usd_per_million=5.0),
    "gpt-4.1-2025-04-14": replace(_OPENAI, usd_per_million=25.0),
    "gpt-4.1-nano-2025-04-14": replace(_OPENAI, usd_per_million=1.5),
    "amazon.nova-micro-v1:0:128k": replace(_NOVA, usd_per_million=1.0),
    "amazon.nova-lite-v1:0:300k": replace(_NOVA, usd_per_million=2.0),
    "amazon.nova-pro-v1:0:300k": replace(_NOVA, usd_per_million=8.0),
    # Nova 2 Lite: 200-20,000 records for SFT and no validation set during SFT
    # (https://docs.aws.amazon.com/bedrock/latest/userguide/nova-2-sft-data-prep.html, "Validation sets")
    "amazon.nova-2-lite-v1:0:256k": replace(_NOVA, min_train=200, validation=False),
}
DEFAULT_PRICES = {
    model: limits.usd_per_million for model, limits in MODEL_LIMITS.items() if limits.usd_per_million is not None
}


def provider_of_format(fmt: str) -> str:
    return "bedrock" if fmt == "bedrock-conversation-2024" else "openai"


def limits_for(base_model: str, provider: str) -> ModelLimits:
    """The base model's limits; an unknown model gets its provider's strictest known limits."""
    known = MODEL_LIMITS.get(base_model)
    if known is not None:
        return known
    same = [m for m in MODEL_LIMITS.values() if m.provider == provider]
    return ModelLimits(
        provider=provider,
        example_tokens=min(m.example_tokens for m in same),
        min_train=max(m.min_train for m in same),
        max_records=min((m.max_records for m in same if m.max_records), default=None),
        validation=all(m.validation for m in same),
        max_train_bytes=min(m.max_train_bytes for m in same),
        max_validation_bytes=min(m.max_validation_bytes for m in same),
        methods=frozenset.intersection(*(m.methods for m in same)),
    )


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


def _text(part: Any) -> str:
    content = part.get("content") if isinstance(part, dict) else part
    if isinstance(content, list):  # bedrock-conversation-2024: [{"text": ...}]
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def record_texts(example: dict[str, Any]) -> list[str]:
    """Every text of a record, in any of the four shapes: system prompt, turns, both outputs."""
    texts: list[str] = [str(s.get("text", "")) for s in example.get("system") or [] if isinstance(s, dict)]
    messages = example.get("messages")
    if messages is None and isinstance(example.get("input"), dict):
        messages = example["input"].get("messages")
    for m in messages or []:
        if not isinstance(m, dict):
            continue
        if "candidates" in m:
            texts += [_text(c) for c in m.get("candidates") or []]
        else:
            texts.append(_text(m))
    for key in ("preferred_output", "non_preferred_output"):
        texts += [_text(m) for m in example.get(key) or []]
    return texts


def _check_chat(messages: Any, where: str) -> list[str]:
    if not isinstance(messages, list) or not messages:
        return [f"{where}: messages must be a non-empty list"]
    errors = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            errors.append(f"{where}[{i}]: role must be one of {sorted(ROLES)}")
            continue
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            errors.append(f"{where}[{i}]: empty content")
        if set(m) - {"role", "content", "weight", "name"}:
            errors.append(f"{where}[{i}]: unexpected keys {sorted(set(m) - {'role', 'content', 'weight', 'name'})}")
        if "weight" in m and m["weight"] not in (0, 1):
            errors.append(f"{where}[{i}]: weight must be 0 or 1")
    return errors


def _nova_content(content: Any, where: str) -> list[str]:
    if not isinstance(content, list) or not content:
        return [f"{where}: content must be a non-empty list of {{'text': ...}}"]
    errors = []
    for part in content:
        if not isinstance(part, dict) or set(part) != {"text"} or not isinstance(part["text"], str):
            errors.append(f"{where}: each content part must be {{'text': <string>}}")
        elif not part["text"].strip():
            errors.append(f"{where}: empty text")
    return errors


def _check_nova(example: dict[str, Any], preference: bool) -> list[str]:
    errors = []
    if not isinstance(example.get("schemaVersion"), str):
        errors.append("schemaVersion must be a string (bedrock-conversation-2024)")
    system = example.get("system", [])
    if not isinstance(system, list):
        errors.append("system must be a list of {'text': ...}")
    else:
        errors += _nova_content(system, "system") if system else []
    messages = example.get("messages")
    if not isinstance(messages, list) or len(messages) < 2:
        return [*errors, "messages must hold at least a user and an assistant turn"]
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            errors.append(f"messages[{i}]: role must be user or assistant")
            continue
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            errors.append(f"messages[{i}]: turns must alternate user/assistant starting with user")
        last = i == len(messages) - 1
        if preference and last:
            errors += _check_candidates(m)
        elif "candidates" in m:
            errors.append(f"messages[{i}]: only the last turn may carry candidates")
        else:
            errors += _nova_content(m.get("content"), f"messages[{i}]")
    if messages[-1].get("role") != "assistant" if isinstance(messages[-1], dict) else True:
        errors.append("the last turn must be the assistant's")
    for text in record_texts(example):
        found = NOVA_RESERVED.search(text)
        if found:
            errors.append(f"reserved keyword {found.group(0)!r} (Nova fails the job)")
            break
    return errors


def _check_candidates(message: dict[str, Any]) -> list[str]:
    candidates = message.get("candidates")
    if "content" in message:
        return ["the preference turn carries candidates, not content"]
    if not isinstance(candidates, list) or len(candidates) != 2:
        return ["the last turn must carry two candidates"]
    errors = []
    for c in candidates:
        if not isinstance(c, dict) or set(c) != {"content", "preferenceLabel"}:
            errors.append("each candidate is {'content': [...], 'preferenceLabel': ...}")
            continue
        errors += _nova_content(c["content"], "candidate")
    labels = sorted(str(c.get("preferenceLabel")) for c in candidates if isinstance(c, dict))
    if labels != ["non-preferred", "preferred"]:
        errors.append("candidates must be labelled 'preferred' and 'non-preferred'")
    return errors


def check_example(example: Any, fmt: str) -> list[str]:
    """Format problems of one line, in the shape the provider expects (empty when fine)."""
    fmt = FORMAT_ALIASES.get(fmt, fmt)
    if not isinstance(example, dict):
        return ["line is not a JSON object"]
    if fmt == "openai-sft":
        errors = _check_chat(example.get("messages"), "messages")
        if set(example) - {"messages"}:
            errors.append(f"unexpected keys {sorted(set(example) - {'messages'})}")
        roles = [m.get("role") for m in example.get("messages") or [] if isinstance(m, dict)]
        if "assistant" not in roles:
            errors.append("no assistant turn")
        elif roles[-1] != "assistant":
            errors.append("the last message must be the assistant's")
        return errors
    if fmt == "openai-dpo":
        errors = _check_chat((example.get("input") or {}).get("messages"), "input.messages")
        roles = [m.get("role") for m in (example.get("input") or {}).get("messages") or [] if isinstance(m, dict)]
        if roles and roles[-1] != "user":
            errors.append("input.messages must end with the user's turn")
        for key in ("preferred_output", "non_preferred_output"):
            output = example.get(key)
            if (
                not isinstance(output, list)
                or len(output) != 1
                or not isinstance(output[0], dict)
                or output[0].get("role") != "assistant"
            ):
                errors.append(f"{key} must be exactly one assistant message")
            else:
                errors += _check_chat(output, key)
        return errors
    if fmt in ("nova-sft", "nova-dpo"):
        return _check_nova(example, preference=fmt == "nova-dpo")
    return [f"unknown format {fmt!r}"]


@dataclass
class DatasetReport:
    examples: int = 0
    invalid: int = 0
    over_limit: int = 0
    total_tokens: int = 0
    max_tokens: int = 0
    min_tokens: int = 0
    bytes: int = 0
    token_method: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def mean_tokens(self) -> float:
        return round(self.total_tokens / self.examples, 1) if self.examples else 0.0

    @property
    def ok(self) -> bool:
        return self.invalid == 0 and self.over_limit == 0 and not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "invalid": self.invalid,
            "over_limit": self.over_limit,
            "total_tokens": self.total_tokens,
            "min_tokens": self.min_tokens,
            "max_tokens": self.max_tokens,
            "mean_tokens": self.mean_tokens,
            "bytes": self.bytes,
            "token_method": self.token_method,
            "errors": self.errors[:20],
        }

    def add(self, number: int, problems: list[str], tokens: int, token_limit: int) -> None:
        """One non-empty line (number counts from 1): its format problems and its tokens."""
        self.examples += 1
        if problems:
            self.invalid += 1
            self.errors += [f"line {number}: {p}" for p in problems]
        if tokens > token_limit:
            self.over_limit += 1
            self.errors.append(f"line {number}: {tokens} tokens is over the limit of {token_limit}")
        self.total_tokens += tokens
        self.max_tokens = max(self.max_tokens, tokens)
        self.min_tokens = tokens if self.examples == 1 else min(self.min_tokens, tokens)


def record_tokens(example: Any, count: Callable[[str], int]) -> int:
    """Every part of a record (system prompt, every turn, both outputs of a pair) plus 4 per part
    for its framing."""
    return sum(count(t) + 4 for t in record_texts(example)) if isinstance(example, dict) else 0


def check_lines(lines: Iterable[str], fmt: str, token_limit: int) -> DatasetReport:
    """Check a JSONL stream line by line (memory stays flat)."""
    count, method = token_counter()
    report = DatasetReport(token_method=method)
    for number, line in enumerate(lines, start=1):
        report.bytes += len(line.encode("utf-8"))
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except ValueError:
            report.examples += 1
            report.invalid += 1
            report.errors.append(f"line {number}: not JSON")
            continue
        report.add(number, check_example(example, fmt), record_tokens(example, count), token_limit)
    return report


def check_dataset(train: DatasetReport, validation: DatasetReport, limits: ModelLimits) -> list[str]:
    """File-level rules of the provider: record counts, the validation set, file sizes."""
    problems = []
    if train.examples == 0:
        problems.append("the training file is empty: no example survived selection and cleaning")
    elif train.examples < limits.min_train:
        problems.append(f"{train.examples} training examples; the provider needs at least {limits.min_train}")
    total = train.examples + validation.examples
    if limits.max_records is not None and total > limits.max_records:
        problems.append(f"{total} records; the provider accepts at most {limits.max_records} (training + validation)")
    if validation.examples and not limits.validation:
        problems.append("this base model takes no validation set")
    if train.bytes > limits.max_train_bytes:
        problems.append(f"training file is {train.bytes} bytes; the limit is {limits.max_train_bytes}")
    if validation.bytes > limits.max_validation_bytes:
        problems.append(f"validation file is {validation.bytes} bytes; the limit is {limits.max_validation_bytes}")
    return problems


def cost_estimate(total_tokens: int, base_model: str, epochs: int, prices: dict[str, float]) -> dict[str, Any]:
    price = prices.get(base_model)
    billed = total_tokens * epochs
    return {
        "base_model": base_model,
        "epochs": epochs,
        "billed_tokens": billed,
        "usd_per_million_tokens": price,
        "usd": round(billed / 1e6 * price, 2) if price is not None else None,
    }
