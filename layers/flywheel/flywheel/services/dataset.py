"""Building a training dataset from the outcome store, streaming, into JSONL files and a manifest."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from flywheel.dal import training as training_dal
from flywheel.dal.connection import get_connection
from flywheel.domain import dataset as ds
from flywheel.domain.dataset_checks import (
    DEFAULT_EXAMPLE_TOKEN_LIMITS,
    DEFAULT_PRICES,
    check_lines,
    cost_estimate,
)
from flywheel.settings import Settings


@dataclass
class DatasetSpec:
    min_quality: float = 0.6
    since: datetime | None = None
    until: datetime | None = None
    method: str = "supervised"  # or "dpo"
    dataset_format: str = "openai-chat"  # or "bedrock-conversation-2024"
    validation_fraction: float = 0.1
    base_model: str = "gpt-4.1-mini-2025-04-14"
    epochs: int = 3


@dataclass
class BuiltDataset:
    train_path: Path
    validation_path: Path
    manifest: dict[str, Any]
    smoke_prompt: list[dict[str, str]] = field(default_factory=list)

    @property
    def examples(self) -> int:
        return int(self.manifest["counts"]["train"]) + int(self.manifest["counts"]["validation"])


def _check_format(spec: DatasetSpec) -> str:
    if spec.dataset_format == "bedrock-conversation-2024":
        return spec.dataset_format
    return "dpo" if spec.method == "dpo" else "supervised"


def _examples(rows: Iterator[dict[str, Any]], spec: DatasetSpec,
              redactor: ds.Redactor) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(row, example) pairs, one at a time."""
    if spec.method == "dpo":
        for group in ds.grouped(rows):
            for good, bad in ds.pair_group(group):
                yield good, ds.preference_example(good, bad, redactor)
        return
    for row in rows:
        example = ds.supervised_example(row, redactor)
        if spec.dataset_format == "bedrock-conversation-2024":
            example = ds.to_bedrock_conversation(example)
        yield row, example


def build_dataset(spec: DatasetSpec, out_dir: Path, settings: Settings) -> BuiltDataset:
    """Stream outcomes into train/validation JSONL files; memory holds one example and the
    de-duplication fingerprints, whatever the size of the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    train_path, validation_path = out_dir / "train.jsonl", out_dir / "validation.jsonl"
    redactor, dedupe = ds.Redactor(), ds.NearDuplicateFilter()
    counts: Counter[str] = Counter()
    by_label: Counter[str] = Counter()
    by_org: Counter[str] = Counter()
    by_framework: Counter[str] = Counter()
    digest = hashlib.sha256()
    conn = get_connection()
    rows = training_dal.stream_outcomes(conn, min_quality=spec.min_quality, since=spec.since, until=spec.until,
                                        for_preferences=spec.method == "dpo")
    with train_path.open("w", encoding="utf-8") as train, validation_path.open("w", encoding="utf-8") as val:
        for row, example in _examples(rows, spec, redactor):
            counts["candidates"] += 1
            text = json.dumps(example, ensure_ascii=False, sort_keys=True)
            if not dedupe.admit(_target_text(example)):
                continue
            is_val = ds.is_validation(str(row["outcome_id"]), spec.validation_fraction)
            handle: TextIO = val if is_val else train
            handle.write(text + "\n")
            digest.update(text.encode())
            counts["validation" if is_val else "train"] += 1
            by_label[str(row.get("training_label"))] += 1
            by_org[str(row.get("org_id"))] += 1
            by_framework[str(row.get("framework") or "none")] += 1
    fmt = _check_format(spec)
    limit = DEFAULT_EXAMPLE_TOKEN_LIMITS.get(spec.base_model, 32_000)
    with train_path.open(encoding="utf-8") as f:
        train_report = check_lines(f, fmt, limit)
    with validation_path.open(encoding="utf-8") as f:
        validation_report = check_lines(f, fmt, limit)
    prices = {**DEFAULT_PRICES, **json.loads(settings.training_prices_json or "{}")}
    manifest = {
        "spec": {"min_quality": spec.min_quality, "since": spec.since, "until": spec.until, "method": spec.method,
                 "format": spec.dataset_format, "validation_fraction": spec.validation_fraction,
                 "base_model": spec.base_model},
        "counts": {"candidates": counts["candidates"], "train": counts["train"], "validation": counts["validation"],
                   "duplicates_dropped": dict(dedupe.dropped)},
        "by_label": dict(by_label), "by_org": dict(by_org), "by_framework": dict(by_framework),
        "redactions": dict(redactor.counts),
        "tokens": {"train": train_report.as_dict(), "validation": validation_report.as_dict(),
                   "example_limit": limit},
        "valid": train_report.ok and validation_report.ok,
        "cost_estimate": cost_estimate(train_report.total_tokens, spec.base_model, spec.epochs, prices),
        "dataset_hash": digest.hexdigest(),
    }
    smoke_prompt = _smoke_prompt(validation_path) or _smoke_prompt(train_path)
    return BuiltDataset(train_path, validation_path, json.loads(json.dumps(manifest, default=str)), smoke_prompt)


def _target_text(example: dict[str, Any]) -> str:
    """What de-duplication compares: the message the model learns to write."""
    if "preferred_output" in example:
        return str(example["preferred_output"][0]["content"])
    last = example["messages"][-1]["content"]
    return "".join(p.get("text", "") for p in last) if isinstance(last, list) else str(last)


def _smoke_prompt(path: Path) -> list[dict[str, str]]:
    """The system and user turns of the file's first example, as chat messages."""
    with path.open(encoding="utf-8") as f:
        line = f.readline()
    if not line:
        return []
    example = json.loads(line)
    if "schemaVersion" in example:  # bedrock-conversation-2024
        system = [{"role": "system", "content": s["text"]} for s in example.get("system", [])]
        users = [{"role": "user", "content": m["content"][0]["text"]}
                 for m in example["messages"] if m["role"] == "user"]
        return system + users[:1]
    messages = example["messages"] if "messages" in example else example["input"]["messages"]
    return [m for m in messages if m["role"] != "assistant"]
