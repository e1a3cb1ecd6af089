"""Building a training dataset from the outcome store into JSONL files and a manifest.

Three streaming passes, memory bounded by the near-duplicate signatures (256 bytes an example):
1. rows -> cleaned, redacted examples (optionally a batched Comprehend second pass) -> a private
   stage file, plus MinHash signatures and prompt keys;
2. near-duplicate clusters (dropped but one), split groups (near-duplicates and identical prompts
   always on one side) -> which example goes where;
3. the stage file -> train/validation in the provider's format; then format and limit checks and
   the residual scan, which runs every detector again over the written files.
The stage file and the scan's context (names to look for) live in a private temporary folder
that is deleted when the build ends; only the redacted files and the manifest are left.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np

from flywheel.dal import training as training_dal
from flywheel.dal.connection import get_connection
from flywheel.domain import dataset as ds
from flywheel.domain import near_duplicates as nd
from flywheel.domain.dataset_checks import (
    DEFAULT_PRICES,
    ModelLimits,
    check_dataset,
    check_lines,
    cost_estimate,
    limits_for,
    provider_of_format,
    record_texts,
)
from flywheel.domain.redaction import DEFAULT_DETECTORS, RedactionContext, Redactor, Span, apply_spans
from flywheel.errors import InvalidInput
from flywheel.settings import Settings


class PiiPass(Protocol):
    """A second detection pass over many texts at once: Comprehend in AWS
    (`flywheel.clients.comprehend.ComprehendPii`), the same client over a Stubber in tests."""

    usage: Any

    def find(self, texts: Sequence[str]) -> list[list[Span]]: ...

COMPREHEND_BATCH_BYTES = 90_000


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

    @property
    def provider(self) -> str:
        return provider_of_format(self.dataset_format)

    @property
    def check_format(self) -> str:
        family = "nova" if self.provider == "bedrock" else "openai"
        return f"{family}-{'dpo' if self.method == 'dpo' else 'sft'}"


@dataclass
class BuiltDataset:
    train_path: Path
    validation_path: Path
    manifest: dict[str, Any]
    smoke_prompt: list[dict[str, str]] = field(default_factory=list)

    @property
    def examples(self) -> int:
        return int(self.manifest["counts"]["train"]) + int(self.manifest["counts"]["validation"])

    @property
    def failure(self) -> str | None:
        """Why this dataset must not be uploaded (None when it may)."""
        scan = self.manifest["residual_scan"]
        if not scan["passed"]:
            return (f"residual scan found personal data in {scan['hits']} example(s) after redaction: "
                    f"outcome ids {', '.join(scan['offending_ids'][:20])}")
        if self.manifest["problems"]:
            return "; ".join(self.manifest["problems"][:5])
        return None


class ResidualPersonalData(InvalidInput):
    """The residual scan found personal data in the written files: nothing may be uploaded."""

    code = "residual_personal_data"


def check_spec(spec: DatasetSpec) -> ModelLimits:
    """Refuse, before reading anything, a base model that does not match the format."""
    if spec.dataset_format not in ds.FORMATS:
        raise InvalidInput(f"unknown dataset format {spec.dataset_format!r}")
    if spec.method not in ("supervised", "dpo"):
        raise InvalidInput(f"unknown method {spec.method!r}")
    limits = limits_for(spec.base_model, spec.provider)
    if limits.provider != spec.provider:
        raise InvalidInput(f"base model {spec.base_model!r} is a {limits.provider} model; the "
                           f"{spec.dataset_format} format is for {spec.provider}")
    return limits


def build_dataset(spec: DatasetSpec, out_dir: Path, settings: Settings, pii_pass: PiiPass | None = None,
                  redactor: Redactor | None = None) -> BuiltDataset:
    """Stream the outcomes into redacted, de-duplicated, split and checked JSONL files. The
    residual scan always runs every default detector, whatever `redactor` redacted with."""
    limits = check_spec(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_path, validation_path = out_dir / "train.jsonl", out_dir / "validation.jsonl"
    fraction = spec.validation_fraction if limits.validation else 0.0
    redactor = redactor or Redactor()
    with tempfile.TemporaryDirectory(prefix="flywheel-dataset-") as private:
        stage = Path(private) / "stage.jsonl"
        conn = get_connection()
        rows = training_dal.stream_outcomes(conn, min_quality=spec.min_quality, since=spec.since, until=spec.until,
                                            for_preferences=spec.method == "dpo")
        staged = _stage(rows, spec, redactor, stage, pii_pass)
        plan = _plan(staged, fraction)
        written = _write(stage, plan, spec, train_path, validation_path, Path(private))
        with train_path.open(encoding="utf-8") as f:
            train_report = check_lines(f, spec.check_format, limits.example_tokens)
        with validation_path.open(encoding="utf-8") as f:
            validation_report = check_lines(f, spec.check_format, limits.example_tokens)
        scan = residual_scan([(train_path, Path(private) / "train.scan.jsonl"),
                              (validation_path, Path(private) / "validation.scan.jsonl")])
    problems = check_dataset(train_report, validation_report, limits)
    for name, report in (("training", train_report), ("validation", validation_report)):
        if not report.ok:
            problems.append(f"{name} file: {report.invalid} invalid line(s), {report.over_limit} over the token limit "
                            f"({'; '.join(report.errors[:3])})")
    if staged.comprehend["enabled"]:
        staged.comprehend["usd"] = round(staged.comprehend["units"] * settings.dataset_comprehend_usd_per_unit, 4)
    prices = {**DEFAULT_PRICES, **json.loads(settings.training_prices_json or "{}")}
    all_tokens = train_report.total_tokens
    manifest = {
        "spec": {"min_quality": spec.min_quality, "since": spec.since, "until": spec.until, "method": spec.method,
                 "format": spec.dataset_format, "line_shape": spec.check_format,
                 "validation_fraction": fraction, "base_model": spec.base_model},
        "trainable_on": _trainable_on(spec, limits),
        "counts": {"candidates": staged.count, "train": written.counts["train"],
                   "validation": written.counts["validation"], "duplicates_dropped": plan.dropped,
                   "split_groups": plan.groups},
        "by_label": dict(written.by_label), "by_org": dict(written.by_org),
        "by_framework": dict(written.by_framework),
        "redactions": dict(redactor.counts),
        "comprehend": staged.comprehend,
        "reserved_keywords_neutralised": written.reserved,
        "dedupe": {"method": f"MinHash ({nd.PERMUTATIONS} permutations) over word 3-shingles, LSH "
                             f"{nd.BANDS}x{nd.ROWS}", "duplicate_threshold": nd.DUPLICATE_THRESHOLD,
                   "split": "near-duplicate clusters and identical prompts stay on one side"},
        "tokens": {"train": train_report.as_dict(), "validation": validation_report.as_dict(),
                   "example_limit": limits.example_tokens},
        "limits": {"provider": limits.provider, "min_train": limits.min_train, "max_records": limits.max_records,
                   "validation": limits.validation, "max_train_bytes": limits.max_train_bytes,
                   "max_validation_bytes": limits.max_validation_bytes, "methods": sorted(limits.methods),
                   "regions": list(limits.regions)},
        "problems": problems,
        "residual_scan": scan,
        "valid": not problems and scan["passed"],
        "cost_estimate": cost_estimate(all_tokens, spec.base_model, spec.epochs,
                                       {k: float(v) for k, v in prices.items() if v is not None}),
        "dataset_hash": written.digest,
    }
    smoke_prompt = _smoke_prompt(validation_path) or _smoke_prompt(train_path)
    return BuiltDataset(train_path, validation_path, json.loads(json.dumps(manifest, default=str)), smoke_prompt)


def _trainable_on(spec: DatasetSpec, limits: ModelLimits) -> str:
    if spec.provider == "bedrock" and spec.method == "dpo":
        return ("Amazon Nova DPO recipes on SageMaker AI; Amazon Bedrock model customization does not run DPO "
                "(https://docs.aws.amazon.com/nova/latest/userguide/customization.html)")
    if spec.provider == "bedrock":
        return f"Amazon Bedrock model customization in {', '.join(limits.regions) or 'any Region'}"
    return "OpenAI (or Azure OpenAI) fine-tuning"


# --- pass 1: stage ------------------------------------------------------------------------------

@dataclass
class Staged:
    count: int = 0
    sides: int = 1
    signatures: list[np.ndarray] = field(default_factory=list)  # per side, (n, 64) uint32
    prompt_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    first_ids: list[str] = field(default_factory=list)
    comprehend: dict[str, Any] = field(default_factory=lambda: {"enabled": False})


def _examples(rows: Iterator[dict[str, Any]], spec: DatasetSpec, redactor: Redactor,
              ) -> Iterator[tuple[ds.Example, RedactionContext, list[RedactionContext]]]:
    """Examples with the context of each target (a DPO pair has two leads)."""
    if spec.method == "dpo":
        for group in ds.grouped(rows):
            for good, bad in ds.pair_group(group):
                contexts = [ds.context_of(good), ds.context_of(bad)]
                yield ds.preference_example(good, bad, redactor), contexts[0], contexts
        return
    for row in rows:
        context = ds.context_of(row)
        yield ds.supervised_example(row, redactor), context, [context]


def _stage(rows: Iterator[dict[str, Any]], spec: DatasetSpec, redactor: Redactor, stage: Path,
           pii_pass: PiiPass | None) -> Staged:
    staged = Staged(sides=2 if spec.method == "dpo" else 1)
    sides: list[list[np.ndarray]] = [[] for _ in range(staged.sides)]
    prompt_keys: list[int] = []
    buffer: list[tuple[ds.Example, RedactionContext, list[RedactionContext]]] = []
    buffered_bytes = 0
    finder_counts: Counter[str] = Counter()

    def flush(handle: TextIO) -> None:
        nonlocal buffered_bytes
        if not buffer:
            return
        if pii_pass is not None:
            _second_pass([b[0] for b in buffer], pii_pass, finder_counts)
        for side in range(staged.sides):
            sides[side].append(nd.signatures([_body(b[0].targets[side]) for b in buffer]))
        for example, prompt_context, contexts in buffer:
            prompt_keys.append(ds.text_key(example.prompt))
            staged.first_ids.append(example.outcome_ids[0])
            handle.write(json.dumps({"ids": example.outcome_ids, "system": example.system, "prompt": example.prompt,
                                     "targets": example.targets, "meta": example.meta,
                                     "scan": [_context_json(prompt_context), *map(_context_json, contexts)]},
                                    ensure_ascii=False) + "\n")
        staged.count += len(buffer)
        buffer.clear()
        buffered_bytes = 0

    with stage.open("w", encoding="utf-8") as handle:
        for item in _examples(rows, spec, redactor):
            buffer.append(item)
            buffered_bytes += sum(len(t) for t in item[0].texts())
            if buffered_bytes >= COMPREHEND_BATCH_BYTES or len(buffer) >= 512:
                flush(handle)
        flush(handle)
    staged.signatures = [np.concatenate(s) if s else np.zeros((0, nd.PERMUTATIONS), np.uint32) for s in sides]
    staged.prompt_keys = np.array(prompt_keys, dtype=np.int64)
    if pii_pass is not None:
        usage = pii_pass.usage
        staged.comprehend = {"enabled": True, "replaced": dict(finder_counts), "requests": usage.requests,
                             "characters": usage.characters, "units": usage.units}
    return staged


def _body(target: str) -> str:
    """What near-duplicate detection compares: the message without its (templated) subject line."""
    return target.split("\n\n", 1)[1] if target.startswith("Subject: ") and "\n\n" in target else target


def _second_pass(examples: list[ds.Example], pii_pass: PiiPass, counts: Counter[str]) -> None:
    """Comprehend over the prompts and targets (not the fixed system prompt), one batch at a time."""
    texts = [t for e in examples for t in (e.prompt, *e.targets)]
    spans = pii_pass.find(texts)
    k = 0
    for example in examples:
        example.prompt = apply_spans(example.prompt, spans[k], counts)
        k += 1
        for i, target in enumerate(example.targets):
            example.targets[i] = apply_spans(target, spans[k], counts)
            k += 1


def _context_json(context: RedactionContext) -> dict[str, Any]:
    return {"regions": list(context.regions), "terms": [list(t) for t in context.terms]}


# --- pass 2: plan ---------------------------------------------------------------------------------

@dataclass
class Plan:
    keep: np.ndarray
    validation: np.ndarray
    dropped: dict[str, int]
    groups: int


def _plan(staged: Staged, fraction: float) -> Plan:
    """Which examples stay (one per near-duplicate cluster; for DPO a cluster forms on either
    side, and a pair whose two sides are near-duplicates of each other teaches nothing) and on
    which side of the split each lands (near-duplicates and identical prompts together)."""
    n = staged.count
    dup_edges = [nd.similar_pairs(sigs, nd.DUPLICATE_THRESHOLD)[:2] for sigs in staged.signatures]
    clusters = nd.components(n, dup_edges)
    representative = clusters == np.arange(n)
    identical = int(sum((sigs == sigs[clusters]).all(axis=1)[~representative].sum() for sigs in staged.signatures[:1]))
    degenerate = np.zeros(n, dtype=bool)
    if staged.sides == 2 and n:
        degenerate = (staged.signatures[0] == staged.signatures[1]).mean(axis=1) >= nd.DUPLICATE_THRESHOLD
    keep = representative & ~degenerate
    # among the kept examples (one per near-duplicate cluster, so clusters cannot straddle),
    # identical prompts form one group; a group's side is a hash of its first outcome id
    kept = np.nonzero(keep)[0]
    order = kept[np.argsort(staged.prompt_keys[kept], kind="stable")]
    same = staged.prompt_keys[order][1:] == staged.prompt_keys[order][:-1]
    groups = nd.components(n, [(order[:-1][same], order[1:][same])])
    validation = _assign_sides(groups, kept, staged.first_ids, fraction)
    dropped = {"near_duplicate": int((~representative).sum()), "of_which_identical": identical,
               "degenerate_pair": int((degenerate & representative).sum())}
    return Plan(keep, validation, dropped, len(set(groups[kept].tolist())))


def _assign_sides(groups: np.ndarray, kept: np.ndarray, first_ids: list[str], fraction: float) -> np.ndarray:
    """A group goes to validation when the hash of its first outcome id says so, unless that
    would take validation past twice its share: with few, large groups (many examples sharing
    one prompt) the training side is never emptied into validation. When the hash picks no group
    at all, the first group (in hash order) that fits is held out, so there is a validation set."""
    sizes: dict[int, int] = {}
    for g in groups[kept].tolist():
        sizes[g] = sizes.get(g, 0) + 1
    budget = min(int(np.ceil(2 * fraction * len(kept))), len(kept) - 1)
    chosen: set[int] = set()
    ordered = sorted(sizes, key=lambda g: hashlib.sha256(first_ids[g].encode()).hexdigest())
    for g in ordered:
        if ds.is_validation(first_ids[g], fraction) and sizes[g] <= budget:
            chosen.add(g)
            budget -= sizes[g]
    if not chosen and fraction > 0 and len(sizes) > 1:  # few groups: still hold one out, the first that fits
        chosen = set([g for g in ordered if sizes[g] <= budget][:1])
    return np.isin(groups, list(chosen))


# --- pass 3: write --------------------------------------------------------------------------------

@dataclass
class Written:
    counts: Counter[str] = field(default_factory=Counter)
    by_label: Counter[str] = field(default_factory=Counter)
    by_org: Counter[str] = field(default_factory=Counter)
    by_framework: Counter[str] = field(default_factory=Counter)
    reserved: int = 0
    digest: str = ""


def _write(stage: Path, plan: Plan, spec: DatasetSpec, train_path: Path, validation_path: Path,
           private: Path) -> Written:
    written = Written()
    digest = hashlib.sha256()
    with (stage.open(encoding="utf-8") as source, train_path.open("w", encoding="utf-8") as train,
          validation_path.open("w", encoding="utf-8") as val,
          (private / "train.scan.jsonl").open("w", encoding="utf-8") as train_scan,
          (private / "validation.scan.jsonl").open("w", encoding="utf-8") as val_scan):
        for index, line in enumerate(source):
            if not plan.keep[index]:
                continue
            record = json.loads(line)
            example = ds.Example(record["ids"], record["prompt"], record["targets"], record["system"], record["meta"])
            if spec.provider == "bedrock":
                payload, neutralised = ds.to_nova(example)
                written.reserved += neutralised
            else:
                payload = ds.to_openai(example)
            text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
            is_val = bool(plan.validation[index])
            (val if is_val else train).write(text + "\n")
            (val_scan if is_val else train_scan).write(json.dumps({"ids": record["ids"], "scan": record["scan"]},
                                                                  ensure_ascii=False) + "\n")
            digest.update(text.encode())
            written.counts["validation" if is_val else "train"] += 1
            written.by_label[record["meta"]["label"]] += 1
            written.by_org[record["meta"]["org"]] += 1
            written.by_framework[record["meta"]["framework"]] += 1
    written.digest = digest.hexdigest()
    return written


# --- residual scan ----------------------------------------------------------------------------------

def residual_scan(files: Sequence[tuple[Path, Path]], redactor: Redactor | None = None) -> dict[str, Any]:
    """Every detector again over every text of every written line, with the names known for that
    line's messages; any hit fails the build. Reports outcome ids, never the text."""
    redactor = redactor or Redactor()
    lines = hits = 0
    offending: list[str] = []
    by_detector: Counter[str] = Counter()
    for data_path, scan_path in files:
        with data_path.open(encoding="utf-8") as data, scan_path.open(encoding="utf-8") as scan:
            for data_line, scan_line in zip(data, scan, strict=True):
                lines += 1
                context_info = json.loads(scan_line)
                contexts = [RedactionContext(tuple(c["regions"]), tuple(tuple(t) for t in c["terms"]))  # type: ignore[misc]
                            for c in context_info["scan"]]
                merged = RedactionContext(
                    tuple(dict.fromkeys(r for c in contexts for r in c.regions)),
                    tuple(sorted({t for c in contexts for t in c.terms}, key=lambda t: (-len(t[0]), t[0]))))
                found = [s for text in record_texts(json.loads(data_line)) for s in redactor.find(text, merged)]
                if found:
                    hits += 1
                    offending += context_info["ids"]
                    by_detector.update(s.detector for s in found)
    return {"detectors": [d.name for d in DEFAULT_DETECTORS], "lines_scanned": lines, "hits": hits,
            "by_detector": dict(by_detector), "offending_ids": offending[:100], "passed": hits == 0}


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
