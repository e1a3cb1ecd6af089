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

import array
import ast
import contextlib
import dataclasses
import functools
import gc
import hashlib
import importlib.metadata
import itertools
import json
import multiprocessing
import os
import queue
import sys
import tempfile
import threading
import time
import unicodedata
import uuid
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import flywheel
from flywheel.dal import dataset_cache as cache_dal
from flywheel.dal import training as training_dal
from flywheel.dal.connection import get_connection, new_connection
from flywheel.domain import dataset as ds
from flywheel.domain import near_duplicates as nd
from flywheel.domain.dataset_checks import (
    DEFAULT_PRICES,
    DatasetReport,
    ModelLimits,
    check_dataset,
    check_example,
    cost_estimate,
    limits_for,
    provider_of_format,
    record_texts,
    record_tokens,
    token_counter,
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
    # wall seconds of each pass (stage, plan, write): not in the manifest, which is the same
    # however fast the build went
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def examples(self) -> int:
        return int(self.manifest["counts"]["train"]) + int(self.manifest["counts"]["validation"])

    @property
    def failure(self) -> str | None:
        """Why this dataset must not be uploaded (None when it may)."""
        scan = self.manifest["residual_scan"]
        if not scan["passed"]:
            return (
                f"residual scan found personal data in {scan['hits']} example(s) after redaction: "
                f"outcome ids {', '.join(scan['offending_ids'][:20])}"
            )
        if self.manifest["problems"]:
            return "; ".join(self.manifest["problems"][:5])
        return None


class ResidualPersonalData(InvalidInput):
    """The residual scan found personal data in the written files: nothing may be uploaded."""

    code = "residual_personal_data"


class DatasetTooLarge(InvalidInput):
    """The dataset cannot be built in the time this invocation has: the run fails with the reason
    before the function's timeout would cut it off."""

    code = "dataset_too_large"


@dataclass
class TimeBudget:
    """When the build must be done (time.monotonic()) and how fast it is expected to go."""

    deadline: float
    seconds_per_row: float  # pass 1, one worker
    workers: int
    finish_seconds_per_row: float  # passes 2 and 3 (de-duplicate, split, write), after pass 1
    cached_seconds_per_row: float  # pass 1, one worker, an outcome whose line is cached

    def check(self, rows: int, done: int = 0, elapsed: float = 0.0, cached: int = 0, read_back: float = 0.0) -> None:
        """Before the build (`done` 0: the configured rates, `cached` of the rows at the cached rate)
        or during it (pass 1's pace seen so far, `read_back` the share of the items done so far that
        were read from the cache); passes 2 and 3 run after pass 1, in the streaming process alone,
        at the configured rate."""
        left_rows = rows - done
        if done >= 2000:
            # the pace seen so far, per row built: a cached row counts as the configured rates' ratio
            # of one. A weekly build reads its new (uncached) outcomes last, so the rate of its first
            # rows, most of them cached, would promise the rest far too soon
            cached_done = min(round(done * read_back), cached)
            cached_left = max(0, cached - cached_done)
            ratio = self.cached_seconds_per_row / self.seconds_per_row
            done_work = done - cached_done + cached_done * ratio
            pass_one = elapsed * (left_rows - cached_left + cached_left * ratio) / done_work
        else:  # the rows done taken as cached ones: the rest is not underestimated
            cached_left = max(0, cached - done)
            pass_one = (
                (left_rows - cached_left) * self.seconds_per_row + cached_left * self.cached_seconds_per_row
            ) / self.workers
        finish = rows * self.finish_seconds_per_row
        needed, left = pass_one + finish, self.deadline - time.monotonic()
        if needed > left:
            speed = left_rows / pass_one if pass_one else 0.0
            raise DatasetTooLarge(
                f"the dataset cannot be built in time: {rows} outcomes"
                + (f" ({cached} of them with a cached line)" if cached else "")
                + f" need about {needed + elapsed:.0f} s at {speed:,.1f} outcomes/s with {self.workers} worker(s) "
                f"and {finish:.0f} s to de-duplicate and write them, and this run has {left:.0f} s left before "
                "its upload; narrow it (since_days, "
                "min_quality_score) or give TrainingPipelineFunction more memory (every 1,769 MB is another "
                "vCPU, another worker)",
                outcomes=rows,
                projected_s=round(needed + elapsed),
                available_s=round(left),
            )


def check_spec(spec: DatasetSpec) -> ModelLimits:
    """Refuse, before reading anything, a base model that does not match the format."""
    if spec.dataset_format not in ds.FORMATS:
        raise InvalidInput(f"unknown dataset format {spec.dataset_format!r}")
    if spec.method not in ("supervised", "dpo"):
        raise InvalidInput(f"unknown method {spec.method!r}")
    limits = limits_for(spec.base_model, spec.provider)
    if limits.provider != spec.provider:
        raise InvalidInput(
            f"base model {spec.base_model!r} is a {limits.provider} model; the "
            f"{spec.dataset_format} format is for {spec.provider}"
        )
    return limits


def build_dataset(
    spec: DatasetSpec,
    out_dir: Path,
    settings: Settings,
    pii_pass: PiiPass | None = None,
    redactor: Redactor | None = None,
    deadline: float | None = None,
) -> BuiltDataset:
    """Stream the outcomes into redacted, de-duplicated, split and checked JSONL files. The
    residual scan always runs every default detector, whatever `redactor` redacted with. With a
    `deadline` (time.monotonic()), a build that cannot finish by then fails first, with the reason."""
    limits = check_spec(spec)
    workers = 1 if pii_pass is not None else build_workers(settings)
    # lines are kept for the next build when they are the default redaction's, whole (a Comprehend
    # pass is a paid call whose answers may change): see LineCache
    cache = settings.dataset_line_cache and redactor is None and pii_pass is None and code_is_loaded()
    budget = (
        TimeBudget(
            deadline,
            settings.dataset_build_seconds_per_row,
            workers,
            settings.dataset_finish_seconds_per_row,
            settings.dataset_cached_seconds_per_row,
        )
        if deadline
        else None
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    train_path, validation_path = out_dir / "train.jsonl", out_dir / "validation.jsonl"
    fraction = spec.validation_fraction if limits.validation else 0.0
    redactor = redactor or Redactor()
    with tempfile.TemporaryDirectory(prefix="flywheel-dataset-") as private:
        stage = Path(private) / "stage.jsonl"
        conn = get_connection()
        preferences = spec.method == "dpo"
        expected = cached = 0
        if budget:
            expected, cached = training_dal.count_outcomes(
                conn,
                min_quality=spec.min_quality,
                since=spec.since,
                until=spec.until,
                for_preferences=preferences,
                # a pair is only read back while its two messages are still paired, and one new message in
                # a group re-pairs the rest of it: preference builds count nothing as cached
                cache=(LineCache.kind_of(spec), LineCache.recipe_of(spec)) if cache and not preferences else None,
            )
            budget.check(expected, cached=cached)
        rows = training_dal.stream_outcomes(
            conn, min_quality=spec.min_quality, since=spec.since, until=spec.until, for_preferences=preferences
        )
        started = time.monotonic()
        staged = _stage(
            rows,
            spec,
            redactor,
            stage,
            pii_pass,
            workers,
            (lambda done, elapsed, read_back: budget.check(expected, done, elapsed, cached, read_back))
            if budget
            else None,
            cache,
        )
        staged_at = time.monotonic()
        plan = _plan(staged, fraction)
        planned_at = time.monotonic()
        written = _write(stage, plan, train_path, validation_path, staged.token_method, limits.example_tokens)
        seconds = {
            "stage": staged_at - started,
            "plan": planned_at - staged_at,
            "write": time.monotonic() - planned_at,
        }
    train_report, validation_report, scan = written.train_report, written.validation_report, written.scan
    problems = check_dataset(train_report, validation_report, limits)
    for name, report in (("training", train_report), ("validation", validation_report)):
        if not report.ok:
            problems.append(
                f"{name} file: {report.invalid} invalid line(s), {report.over_limit} over the token limit "
                f"({'; '.join(report.errors[:3])})"
            )
    if staged.comprehend["enabled"]:
        staged.comprehend["usd"] = round(staged.comprehend["units"] * settings.dataset_comprehend_usd_per_unit, 4)
    prices = {**DEFAULT_PRICES, **json.loads(settings.training_prices_json or "{}")}
    all_tokens = train_report.total_tokens
    manifest = {
        "spec": {
            "min_quality": spec.min_quality,
            "since": spec.since,
            "until": spec.until,
            "method": spec.method,
            "format": spec.dataset_format,
            "line_shape": spec.check_format,
            "validation_fraction": fraction,
            "base_model": spec.base_model,
        },
        "trainable_on": _trainable_on(spec, limits),
        "counts": {
            "candidates": staged.count,
            "train": written.counts["train"],
            "validation": written.counts["validation"],
            "duplicates_dropped": plan.dropped,
            "split_groups": plan.groups,
        },
        "by_label": dict(written.by_label),
        "by_org": dict(written.by_org),
        "by_framework": dict(written.by_framework),
        # in one order, however the counts came: those in the written files, and those made in every
        # candidate (near-duplicates and pairs left out included)
        "redactions": dict(sorted(written.redactions.items())),
        "redactions_in_candidates": dict(sorted(redactor.counts.items())),
        "comprehend": staged.comprehend,
        "reserved_keywords_neutralised": written.reserved,
        "dedupe": {
            "method": f"MinHash ({nd.PERMUTATIONS} permutations) over word sets, LSH {nd.BANDS}x{nd.ROWS}",
            "duplicate_threshold": nd.DUPLICATE_THRESHOLD,
            "split": "near-duplicate clusters and identical prompts stay on one side",
        },
        "tokens": {
            "train": train_report.as_dict(),
            "validation": validation_report.as_dict(),
            "example_limit": limits.example_tokens,
        },
        "limits": {
            "provider": limits.provider,
            "min_train": limits.min_train,
            "max_records": limits.max_records,
            "validation": limits.validation,
            "max_train_bytes": limits.max_train_bytes,
            "max_validation_bytes": limits.max_validation_bytes,
            "methods": sorted(limits.methods),
            "regions": list(limits.regions),
        },
        "problems": problems,
        "residual_scan": scan,
        "valid": not problems and scan["passed"],
        "cost_estimate": cost_estimate(
            all_tokens, spec.base_model, spec.epochs, {k: float(v) for k, v in prices.items() if v is not None}
        ),
        "dataset_hash": written.digest,
    }
    smoke_prompt = smoke_prompt_from(validation_path) or smoke_prompt_from(train_path)
    return BuiltDataset(
        train_path, validation_path, json.loads(json.dumps(manifest, default=str)), smoke_prompt, seconds
    )


def _trainable_on(spec: DatasetSpec, limits: ModelLimits) -> str:
    if spec.provider == "bedrock" and spec.method == "dpo":
        return (
            "Amazon Nova DPO recipes on SageMaker AI; Amazon Bedrock model customization does not run DPO "
            "(https://docs.aws.amazon.com/nova/latest/userguide/customization.html)"
        )
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
    split_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))  # see `split_key`
    comprehend: dict[str, Any] = field(default_factory=lambda: {"enabled": False})
    token_method: str = ""


Item = Any  # a row (supervised) or a (preferred, rejected) pair of rows (DPO)


def _items(rows: Iterator[dict[str, Any]], spec: DatasetSpec) -> Iterator[Item]:
    """What becomes one example each: a row, or a pair of comparable rows for DPO (the query
    orders each campaign/segment/framework group together)."""
    if spec.method == "dpo":
        for group in ds.grouped(rows):
            yield from ds.pair_group(group)
        return
    yield from rows


@dataclass
class Batch:
    """Pass 1's output for consecutive items, in their order: a line, signature(s), keys and
    redaction counts each."""

    lines: list[str] = field(default_factory=list)
    signatures: list[np.ndarray] = field(default_factory=list)  # per side, (n, 64) uint32
    prompt_keys: list[int] = field(default_factory=list)
    split_keys: list[int] = field(default_factory=list)
    redactions: list[Counter[str]] = field(default_factory=list)
    clean: list[bool] = field(default_factory=list)  # the residual scan found nothing in the line
    read_back: int = 0  # items read from the line cache, not made


class _Builder:
    """Turns items into staged lines: redacted examples in the provider's format, each checked
    (format, tokens) and scanned by every default detector once more, exactly as it will be
    written; with a `LineCache`, an item built before with the same rows and recipe is read back
    instead. Used in-process and in the worker processes."""

    def __init__(self, spec: DatasetSpec, redactor: Redactor, cache: bool = False) -> None:
        self.spec, self.redactor = spec, redactor
        self.scanner = Redactor()  # the residual scan: every default detector, whatever `redactor` is
        self.count, self.token_method = token_counter()
        self.cache = LineCache(spec) if cache else None

    def rows(self, items: Sequence[Item]) -> list[tuple[dict[str, Any], ...]]:
        return [tuple(item) for item in items] if self.spec.method == "dpo" else [(item,) for item in items]

    def examples(self, rows: Sequence[tuple[dict[str, Any], ...]]) -> list[tuple[ds.Example, RedactionContext]]:
        """The examples of consecutive items (their rows), redacted together, each with the context
        its written line is scanned with (a pair's two contexts merged)."""
        contexts = [tuple(ds.context_of(row) for row in item) for item in rows]
        examples = ds.examples_of(rows, self.redactor, contexts)
        return [(e, c[0] if len(c) == 1 else merge_contexts(c)) for e, c in zip(examples, contexts, strict=True)]

    def finish(self, examples: list[tuple[ds.Example, RedactionContext]]) -> Batch:
        batch = Batch(
            signatures=[
                nd.signatures([_body(e.targets[side]) for e, _ in examples])
                for side in range(len(examples[0][0].targets))
            ]
            if examples
            else [],
            redactions=[e.redactions for e, _ in examples],
        )
        payloads = []
        for example, _ in examples:
            batch.prompt_keys.append(ds.text_key(example.prompt))
            batch.split_keys.append(split_key(example.outcome_ids[0]))
            payloads.append(ds.to_nova(example) if self.spec.provider == "bedrock" else (ds.to_openai(example), 0))
        # every written text of the batch scanned together; the data only: our own words (system
        # prompt, field labels) are blanked first
        texts = [[ds.data_only(t) for t in record_texts(payload)] for payload, _ in payloads]
        found = iter(self.scanner.find_each([(t, c) for (_, c), ts in zip(examples, texts, strict=True) for t in ts]))
        for (payload, neutralised), (example, _), scanned in zip(payloads, examples, texts, strict=True):
            meta = {
                "ids": example.outcome_ids,
                **example.meta,
                "reserved": neutralised,
                "found": [s.detector for _ in scanned for s in next(found)],
                "redactions": example.redactions,
                "problems": check_example(payload, self.spec.check_format),
                "tokens": record_tokens(payload, self.count),
            }
            batch.clean.append(not meta["found"])
            # the meta line holds no raw tab (JSON escapes it): the first tab starts the written line
            batch.lines.append(
                f"{json.dumps(meta, ensure_ascii=False)}\t{json.dumps(payload, ensure_ascii=False, sort_keys=True)}\n"
            )
        return batch

    def build(self, items: Sequence[Item]) -> Batch:
        rows = self.rows(items)
        if self.cache is None:
            return self.finish(self.examples(rows))
        return self.cache.build(rows, lambda todo: self.finish(self.examples(todo)))

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


MASK64 = (1 << 64) - 1  # a uint64 split key is stored as the int64 of the same bits


@functools.cache
def _code_digest() -> bytes:
    """What every cached line was made with: the source of the code that makes a line, and the
    Python, Unicode and library versions that detectors, token counts and signatures depend on. The
    code is this module and the domain modules it builds with, with every flywheel module they
    import, however deep and wherever the import sits (`line_code`); a release that changes only
    webhooks, reports or the database layer keeps the cache."""
    digest = hashlib.blake2b(digest_size=16)
    package = Path(flywheel.__file__).parent
    for path in line_code():
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    versions = [sys.version, unicodedata.unidata_version]
    for name in ("numpy", "phonenumbers", "tiktoken"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{name} {importlib.metadata.version(name)}")
    digest.update(repr(versions).encode())
    return digest.digest()


# the line-making files as they read when this module (and the domain modules it imports) loaded
_SOURCES_AT_IMPORT = flywheel.source_digests()


def code_is_loaded() -> bool:
    """Whether the files of the code that makes a line read now as they did when this process loaded
    flywheel and when it loaded this module (and with it the domain modules), so the recipe hashed
    from them is the code that runs. A file changed in between or since (a local server still
    running after a pull, a copy, a checkout and back; whatever the files' times) turns the cache
    off for this process. In Lambda the code never changes under a process."""
    package = Path(flywheel.__file__).parent
    now = flywheel.source_digests()
    try:
        names = [path.relative_to(package).as_posix() for path in line_code()]
    except OSError as exc:  # installed without its sources: nothing to hash, so nothing to trust
        changed = [f"unreadable: {exc}"]
    else:
        changed = [
            n
            for n in names
            if n not in flywheel.LOADED_SOURCES
            or not now.get(n) == _SOURCES_AT_IMPORT.get(n) == flywheel.LOADED_SOURCES[n]
        ]
    if changed:
        from flywheel.observability import logger  # here: the CLI sets logging up first

        logger.warning(
            "line-making code changed or unreadable since this process started: building without the line cache",
            extra={"changed": changed},
        )
    return not changed


@functools.cache
def line_code() -> list[Path]:
    """The source files whose code makes a staged line: this module, the flywheel.domain modules it
    imports, and every flywheel module those import (read from their syntax trees, imports inside
    functions too), with the packages' __init__ files on the way; sorted. Worked out once a process
    (about 50 ms): a file whose imports changed since reads otherwise, which `code_is_loaded` sees."""
    package = Path(flywheel.__file__).parent

    def files(module: str) -> list[Path]:
        parts = module.split(".")[1:]
        found = [package.joinpath(*parts[:depth], "__init__.py") for depth in range(len(parts) + 1)]
        found.append(package.joinpath(*parts).with_suffix(".py"))
        return [path for path in found if path.is_file()]

    def imported(path: Path) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from flywheel.domain import stats` imports a module too
                names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        return {name for name in names if name == "flywheel" or name.startswith("flywheel.")}

    here = Path(__file__)
    seen = set(files(__name__))
    todo = [path for name in imported(here) if name.startswith("flywheel.domain") for path in files(name)]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += [found for name in imported(path) for found in files(name)]
    return sorted(seen)


class LineCache:
    """Pass 1's lines kept between builds (sql/0017_dataset_line_cache.sql), read back when an
    item's digest matches: a hash of its rows as read and of the recipe, which is everything else a
    line depends on (the code that makes it, `_code_digest`; how tokens are counted; the method and
    format). A line the residual scan flagged is never kept. Talks to the database over a connection
    of its own (autocommit: what a build stored stays stored if it fails later), opened in the
    process that uses it."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.kind, self.recipe = self.kind_of(spec), self.recipe_of(spec)
        self._conn: Any = None
        self._pid = 0

    @staticmethod
    def kind_of(spec: DatasetSpec) -> str:
        return f"{spec.method}:{spec.dataset_format}"

    @staticmethod
    def recipe_of(spec: DatasetSpec) -> bytes:
        """Everything a line depends on besides its rows: the code and versions, how tokens are
        counted, the line's shape."""
        _, token_method = token_counter()
        extra = f"{LineCache.kind_of(spec)} {token_method}".encode()
        return hashlib.blake2b(_code_digest() + extra, digest_size=16).digest()

    def key(self, rows: tuple[dict[str, Any], ...]) -> tuple[str, bytes]:
        """An item's id (its outcome ids) and digest."""
        digest = hashlib.blake2b(self.recipe, digest_size=16)
        # the rows' repr: every column, in the query's order, each value unambiguous (strings quoted,
        # jsonb as the dicts and lists it decodes to, in the order Postgres keeps its keys); twice as
        # fast as sorted JSON. Equal rows make equal reprs, whatever process reads them
        digest.update(repr(rows).encode("utf-8", "surrogatepass"))
        return "/".join(str(row["outcome_id"]) for row in rows), digest.digest()

    def connection(self) -> Any:
        if self._conn is None or self._pid != os.getpid() or self._conn.closed:
            self._conn, self._pid = new_connection(), os.getpid()
        return self._conn

    def build(
        self, rows: list[tuple[dict[str, Any], ...]], make: Callable[[list[tuple[dict[str, Any], ...]]], Batch]
    ) -> Batch:
        """The batch of these items: the cached ones read back, the rest made (`make`) and stored
        (an item whose entry is stale has it replaced)."""
        keys = [self.key(item) for item in rows]
        entries = cache_dal.lookup(self.connection(), self.kind, keys)
        todo = [at for at, (item, _) in enumerate(keys) if (e := entries.get(item)) is None or e["line"] is None]
        made = make([rows[at] for at in todo]) if todo else Batch()
        sides = len(rows[0]) if rows else 1
        if todo:
            # each item's signature(s) as the bytes of one (sides, 64) little-endian block
            signatures = np.stack(made.signatures, axis=1).astype("<u4", copy=False)
            cache_dal.store(
                self.connection(),
                self.kind,
                [
                    cache_dal.Entry(
                        rows[at][0]["org_id"],
                        keys[at][0],
                        uuid.UUID(rows[at][0]["outcome_id"]),
                        uuid.UUID(rows[at][1]["outcome_id"]) if sides == 2 else None,
                        min(row["sent_at"] for row in rows[at]),
                        self.recipe,
                        keys[at][1],
                        made.lines[j],
                        signatures[j].tobytes(),
                        made.prompt_keys[j],
                        made.split_keys[j] - (1 << 64) if made.split_keys[j] > MASK64 >> 1 else made.split_keys[j],
                        made.redactions[j],
                    )
                    for j, at in enumerate(todo)
                    if made.clean[j]
                ],
                replace=[keys[at][0] for at in todo if keys[at][0] in entries],
            )
        if len(todo) == len(rows):
            return made
        batch = Batch(
            signatures=[np.empty((len(rows), nd.PERMUTATIONS), dtype=np.uint32) for _ in range(sides)],
            read_back=len(rows) - len(todo),
        )
        made_at = {at: j for j, at in enumerate(todo)}
        for at, (item, _) in enumerate(keys):
            if (j := made_at.get(at)) is not None:
                batch.lines.append(made.lines[j])
                batch.prompt_keys.append(made.prompt_keys[j])
                batch.split_keys.append(made.split_keys[j])
                batch.redactions.append(made.redactions[j])
                batch.clean.append(made.clean[j])
                for side in range(sides):
                    batch.signatures[side][at] = made.signatures[side][j]
            else:
                e = entries[item]
                batch.lines.append(e["line"])
                batch.prompt_keys.append(e["prompt_key"])
                batch.split_keys.append(e["split_key"] & MASK64)
                batch.redactions.append(Counter(json.loads(e["redactions"])))
                batch.clean.append(True)
                cached = np.frombuffer(e["signatures"], dtype="<u4").reshape(sides, nd.PERMUTATIONS)
                for side in range(sides):
                    batch.signatures[side][at] = cached[side]
        return batch

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None


IN_PROCESS_CHUNK = 64
CHUNK = 128  # items built together (sent to a worker together)


def _with_second_pass(
    items: Iterator[Item], builder: _Builder, pii_pass: PiiPass, comprehend_counts: Counter[str]
) -> Generator[Batch, None, None]:
    """In this process, with a Comprehend pass: batches of up to 512 examples or ~90 kB of text, the
    pass batched over each. Items are redacted IN_PROCESS_CHUNK at a time (one redaction pass over
    all their texts, as in the workers), and the examples join the batch one by one."""
    buffer: list[tuple[ds.Example, RedactionContext]] = []
    size = 0
    while chunk := list(itertools.islice(items, IN_PROCESS_CHUNK)):
        for built in builder.examples(builder.rows(chunk)):
            buffer.append(built)
            size += sum(len(t) for t in built[0].texts())
            if size >= COMPREHEND_BATCH_BYTES or len(buffer) >= 512:
                _second_pass([e for e, _ in buffer], pii_pass, comprehend_counts)
                yield builder.finish(buffer)
                buffer, size = [], 0
    if buffer:
        _second_pass([e for e, _ in buffer], pii_pass, comprehend_counts)
        yield builder.finish(buffer)


def build_workers(settings: Settings) -> int:
    """Processes for pass 1: DATASET_BUILD_WORKERS, else one per CPU this process may use (in
    Lambda, one per 1,769 MB of memory, the size that gets a full vCPU)."""
    if settings.dataset_build_workers:
        return settings.dataset_build_workers
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    return max(1, min(cpus, int(memory) // 1769)) if memory else cpus


def _worker(channel: Connection, builder: _Builder, inherited: Sequence[Connection]) -> None:
    """A forked process: builds the batches it is sent until it is sent None. A thread takes them
    off the pipe as they arrive (the parent keeps two in flight), so the parent's send of the next
    batch never waits for this process's send of a result, and no pipe can fill both ways."""
    for end in inherited:  # the parent's ends of the pipes (forked with it): with this process's copies
        end.close()  # closed, a parent that is gone or stopped reading is seen at once (EOF, EPIPE)
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def receive() -> None:
        items: Any = True
        while items is not None and not isinstance(items, Exception):
            try:
                items = channel.recv()
            except (EOFError, OSError):  # the parent is gone
                items = None
            except Exception as exc:  # a batch that cannot be read back: the build fails with why
                items = exc
            inbox.put(items)

    threading.Thread(target=receive, daemon=True).start()
    with contextlib.closing(builder):
        _serve(channel, builder, inbox)


def _serve(channel: Connection, builder: _Builder, inbox: queue.SimpleQueue[Any]) -> None:
    while (items := inbox.get()) is not None:
        try:
            if isinstance(items, Exception):
                raise items
            answer: tuple[bool, Any] = (True, builder.build(items))
        except Exception as exc:  # the parent raises it
            answer = (False, f"{type(exc).__name__}: {exc}")
        try:
            channel.send(answer)
        except OSError:  # the parent stopped reading (it failed, or stopped early): nobody to tell
            return
        if not answer[0]:
            return


IN_FLIGHT = 2  # batches sent to a worker and not yet read back: one building, one waiting


def _in_workers(
    items: Iterator[Item], builder: _Builder, workers: int, size: int = CHUNK
) -> Generator[Batch, None, None]:
    """Batches built by `workers` forked processes, returned in item order. Each worker holds at
    most two batches (the next waits while one is built, so a worker never idles while the parent
    reads a result, writes it and fetches rows), so memory stays bounded however many rows stream
    in; workers talk over pipes only (no shared-memory queues, which Lambda does not provide)."""
    context = multiprocessing.get_context("fork")
    channels: list[Connection] = []
    processes = []
    try:
        # what this process holds is frozen while it builds (and so in the workers it forks): garbage
        # collections skip those objects (modules, caches: most of what a process holds) instead of
        # walking them again and again, and leave their pages shared (Python's gc.freeze documentation)
        gc.freeze()
        for _ in range(workers):
            mine, theirs = context.Pipe()
            process = context.Process(target=_worker, args=(theirs, builder, [*channels, mine]), daemon=True)
            process.start()
            theirs.close()
            channels.append(mine)
            processes.append(process)
        chunks = (list(itertools.islice(items, size)) for _ in itertools.count())
        pending: deque[int] = deque()  # which worker holds each batch sent, oldest first
        exhausted = False

        def failure(worker: int) -> RuntimeError:
            """Why a worker stopped answering: its own last word when it left one, else how it ended."""
            with contextlib.suppress(EOFError, OSError):
                while channels[worker].poll():
                    ok, result = channels[worker].recv()
                    if not ok:
                        return RuntimeError(f"dataset build worker failed: {result}")
            processes[worker].join(timeout=5)
            code = processes[worker].exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return RuntimeError(
                f"dataset build worker {worker} ended without an answer ({how}; a worker killed by signal 9 "
                "most likely ran out of memory)"
            )

        def send_next(worker: int) -> None:
            nonlocal exhausted
            chunk = [] if exhausted else next(chunks)
            if chunk:
                try:
                    channels[worker].send(chunk)
                except OSError:
                    raise failure(worker) from None
                pending.append(worker)
            else:
                exhausted = True

        for _ in range(IN_FLIGHT):
            for worker in range(workers):
                send_next(worker)
        while pending:
            worker = pending.popleft()  # a worker answers in the order it was sent its batches
            try:
                ok, result = channels[worker].recv()
            except (EOFError, OSError):
                raise failure(worker) from None
            if not ok:
                raise RuntimeError(f"dataset build worker failed: {result}")
            send_next(worker)  # before handing the result on: the worker starts on it meanwhile
            yield result
    finally:
        try:
            for channel in channels:
                with contextlib.suppress(OSError):
                    channel.send(None)
                channel.close()
            for process in processes:
                process.join(timeout=5)
                if process.is_alive():
                    process.kill()
        finally:
            gc.unfreeze()  # collected as before from now on, however the clean-up went


def _stage(
    rows: Iterator[dict[str, Any]],
    spec: DatasetSpec,
    redactor: Redactor,
    stage: Path,
    pii_pass: PiiPass | None,
    workers: int = 1,
    on_progress: Callable[[int, float, float], None] | None = None,
    cache: bool = False,
) -> Staged:
    """Pass 1: every item becomes a staged line (see `_Builder`) plus its near-duplicate signature
    and prompt key; the next passes copy lines, never parse them. With several workers (and no
    Comprehend pass, which is batched over the network) the items are built in parallel, in order."""
    staged = Staged(sides=2 if spec.method == "dpo" else 1)
    # the builder counts its own replacements (in a worker, a cached line's are read back): they
    # come back with each batch and are added to `redactor.counts` here
    builder = _Builder(spec, dataclasses.replace(redactor, counts=Counter()), cache)
    staged.token_method = builder.token_method
    # signatures go to private files as they come (read back once: no chunk list and its copy),
    # the keys into typed arrays (8 bytes an example, not a Python int)
    sig_paths = [stage.with_name(f"signatures-{side}.bin") for side in range(staged.sides)]
    prompt_keys, split_keys = array.array("q"), array.array("Q")
    comprehend_counts: Counter[str] = Counter()
    read_back = 0  # items read from the line cache
    counted = _Counted(rows)
    items = _items(iter(counted), spec)
    if pii_pass is not None:
        batches = _with_second_pass(items, builder, pii_pass, comprehend_counts)
    elif workers > 1:
        batches = _in_workers(items, builder, workers)
    else:
        batches = (builder.build(chunk) for chunk in iter(lambda: list(itertools.islice(items, CHUNK)), []))
    started = time.monotonic()
    with stage.open("w", encoding="utf-8") as handle, contextlib.ExitStack() as files:
        files.callback(builder.close)
        files.enter_context(contextlib.closing(batches))  # an error here stops the workers at once
        sig_files = [files.enter_context(path.open("wb")) for path in sig_paths]
        for batch in batches:
            read_back += batch.read_back
            if on_progress is not None:
                on_progress(
                    counted.done, time.monotonic() - started, read_back / max(1, staged.count + len(batch.lines))
                )
            handle.write("".join(batch.lines))
            for side, signatures in enumerate(batch.signatures):
                sig_files[side].write(np.ascontiguousarray(signatures, dtype=np.uint32).tobytes())
            prompt_keys.extend(batch.prompt_keys)
            split_keys.extend(batch.split_keys)
            staged.count += len(batch.lines)
            for counts in batch.redactions:
                redactor.counts.update(counts)
    staged.signatures = [np.fromfile(path, dtype=np.uint32).reshape(-1, nd.PERMUTATIONS) for path in sig_paths]
    staged.prompt_keys = np.frombuffer(prompt_keys, dtype=np.int64)
    staged.split_keys = np.frombuffer(split_keys, dtype=np.uint64)
    if pii_pass is not None:
        usage = pii_pass.usage
        staged.comprehend = {
            "enabled": True,
            "replaced": dict(comprehend_counts),
            "requests": usage.requests,
            "characters": usage.characters,
            "units": usage.units,
        }
    return staged


class _Counted:
    """Rows passed through, counted (the progress check reads how many were read)."""

    def __init__(self, rows: Iterator[dict[str, Any]]) -> None:
        self.rows, self.done = rows, 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self.rows:
            self.done += 1
            yield row


def merge_contexts(contexts: Iterable[RedactionContext]) -> RedactionContext:
    """One context holding everyone's names and regions (longest term first)."""
    contexts = list(contexts)
    return RedactionContext(
        tuple(dict.fromkeys(r for c in contexts for r in c.regions)),
        tuple(sorted({t for c in contexts for t in c.terms}, key=lambda t: (-len(t[0]), t[0]))),
    )


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
    # for DPO both sides are compared with each other too: a text preferred in one pair and
    # rejected (or a near-duplicate of it rejected) in another teaches the model both ways
    sigs = staged.signatures[0] if staged.sides == 1 else np.concatenate(staged.signatures)
    left, right, _ = nd.similar_pairs(sigs, nd.DUPLICATE_THRESHOLD)
    clusters = nd.components(n, [(left % max(n, 1), right % max(n, 1))])
    degenerate = np.zeros(n, dtype=bool)
    if staged.sides == 2 and n:
        degenerate = (staged.signatures[0] == staged.signatures[1]).mean(axis=1) >= nd.DUPLICATE_THRESHOLD
    # one example per cluster: the first that teaches something
    candidates = np.nonzero(~degenerate)[0]
    _, first = np.unique(clusters[candidates], return_index=True)
    keep = np.zeros(n, dtype=bool)
    keep[candidates[first]] = True
    kept_of = np.full(n, -1)
    kept_of[clusters[keep]] = np.nonzero(keep)[0]
    dropped_dup = np.nonzero(~keep & ~degenerate)[0]
    identical = (
        int(
            (staged.signatures[0][dropped_dup] == staged.signatures[0][kept_of[clusters[dropped_dup]]])
            .all(axis=1)
            .sum()
        )
        if len(dropped_dup)
        else 0
    )
    # among the kept examples (one per near-duplicate cluster, so clusters cannot straddle),
    # identical prompts form one group; a group's side is a hash of its first outcome id
    kept = np.nonzero(keep)[0]
    order = kept[np.argsort(staged.prompt_keys[kept], kind="stable")]
    same = staged.prompt_keys[order][1:] == staged.prompt_keys[order][:-1]
    groups = nd.components(n, [(order[:-1][same], order[1:][same])])
    validation = _assign_sides(groups, kept, staged.split_keys, fraction)
    dropped = {
        "near_duplicate": len(dropped_dup),
        "of_which_identical": identical,
        "degenerate_pair": int(degenerate.sum()),
    }
    return Plan(keep, validation, dropped, len(np.unique(groups[kept])))


def split_key(outcome_id: str) -> int:
    """The first 8 bytes of the SHA-256 of an example's first outcome id: its top 32 bits are the
    bucket of `ds.is_validation`, and groups are taken in its order (as by the digest's hex)."""
    return int.from_bytes(hashlib.sha256(outcome_id.encode()).digest()[:8], "big")


def _assign_sides(groups: np.ndarray, kept: np.ndarray, split_keys: np.ndarray, fraction: float) -> np.ndarray:
    """A group goes to validation when the hash of its first outcome id says so, unless that
    would take validation past twice its share: with few, large groups (many examples sharing
    one prompt) the training side is never emptied into validation. When the hash picks no group
    at all, the first group (in hash order) that fits is held out, so there is a validation set."""
    labels, sizes = np.unique(groups[kept], return_counts=True)
    order = np.lexsort((labels, split_keys[labels]))  # by split key (the hash order), then label
    labels, sizes = labels[order], sizes[order]
    wanted = (split_keys[labels] >> np.uint64(32)) % np.uint64(10_000) < fraction * 10_000
    budget = min(int(np.ceil(2 * fraction * len(kept))), len(kept) - 1)
    chosen: list[int] = []
    for g, size in zip(labels[wanted].tolist(), sizes[wanted].tolist(), strict=True):  # the few the hash picks
        if size <= budget:
            chosen.append(g)
            budget -= size
    if not chosen and fraction > 0 and len(labels) > 1:  # few groups: still hold one out, the first that fits
        chosen = labels[sizes <= budget][:1].tolist()
    return np.isin(groups, chosen)


# --- pass 3: write ----------------------------------------------------------------------------------


@dataclass
class Written:
    counts: Counter[str] = field(default_factory=Counter)
    by_label: Counter[str] = field(default_factory=Counter)
    by_org: Counter[str] = field(default_factory=Counter)
    by_framework: Counter[str] = field(default_factory=Counter)
    reserved: int = 0
    redactions: Counter[str] = field(default_factory=Counter)
    digest: str = ""
    train_report: DatasetReport = field(default_factory=DatasetReport)
    validation_report: DatasetReport = field(default_factory=DatasetReport)
    scan: dict[str, Any] = field(default_factory=dict)


def _write(
    stage: Path, plan: Plan, train_path: Path, validation_path: Path, token_method: str, token_limit: int
) -> Written:
    """Pass 3: the kept lines, copied as staged, into their files; the per-file reports (format,
    tokens, bytes, line numbers) and the residual scan's result gathered from what pass 1 found."""
    written = Written(
        train_report=DatasetReport(token_method=token_method),
        validation_report=DatasetReport(token_method=token_method),
    )
    digest = hashlib.sha256()
    hits: tuple[list[str], list[str]] = ([], [])  # offending outcome ids, training file first
    by_detector: Counter[str] = Counter()
    lines = hit_lines = 0
    with (
        stage.open(encoding="utf-8") as source,
        train_path.open("w", encoding="utf-8") as train,
        validation_path.open("w", encoding="utf-8") as val,
    ):
        for index, line in enumerate(source):
            if not plan.keep[index]:
                continue
            head, _, text = line.partition("\t")
            meta = json.loads(head)
            is_val = bool(plan.validation[index])
            (val if is_val else train).write(text)
            data = text.encode()
            digest.update(data[:-1])
            report = written.validation_report if is_val else written.train_report
            report.bytes += len(data)
            report.add(report.examples + 1, meta["problems"], meta["tokens"], token_limit)
            lines += 1
            if meta["found"]:
                hit_lines += 1
                hits[is_val].extend(meta["ids"])
                by_detector.update(meta["found"])
            written.counts["validation" if is_val else "train"] += 1
            written.by_label[meta["label"]] += 1
            written.by_org[meta["org"]] += 1
            written.by_framework[meta["framework"]] += 1
            written.reserved += meta["reserved"]
            written.redactions.update(meta["redactions"])
    written.digest = digest.hexdigest()
    written.scan = _scan_result(lines, hit_lines, hits[0] + hits[1], by_detector)
    return written


# --- residual scan ----------------------------------------------------------------------------------


def _scan_result(lines: int, hits: int, offending: list[str], by_detector: Counter[str]) -> dict[str, Any]:
    return {
        "detectors": [d.name for d in DEFAULT_DETECTORS],
        "lines_scanned": lines,
        "hits": hits,
        "by_detector": dict(by_detector),
        "offending_ids": offending[:100],
        "passed": hits == 0,
    }


def residual_scan(files: Sequence[tuple[Path, Path]], redactor: Redactor | None = None) -> dict[str, Any]:
    """Every detector again over every text of every line of written files, with the names known
    for that line's messages (a sidecar line `{"ids", "scan": [contexts]}` per data line); any hit
    fails. Reports outcome ids, never the text. (A build scans each line in pass 1, exactly as it
    is written, with the contexts it already holds.)"""
    redactor = redactor or Redactor()
    lines = hits = 0
    offending: list[str] = []
    by_detector: Counter[str] = Counter()
    for data_path, scan_path in files:
        with data_path.open(encoding="utf-8") as data, scan_path.open(encoding="utf-8") as scan:
            for data_line, scan_line in zip(data, scan, strict=True):
                lines += 1
                info = json.loads(scan_line)
                context = merge_contexts(
                    RedactionContext(tuple(c["regions"]), tuple(tuple(t) for t in c["terms"])) for c in info["scan"]
                )
                found = [
                    s.detector
                    for spans in redactor.find_many(
                        [ds.data_only(t) for t in record_texts(json.loads(data_line))], context
                    )
                    for s in spans
                ]
                if found:
                    hits += 1
                    offending += info["ids"]
                    by_detector.update(found)
    return _scan_result(lines, hits, offending, by_detector)


def smoke_prompt_from(path: Path) -> list[dict[str, str]]:
    """The system and user turns of the file's first example, as chat messages."""
    with path.open(encoding="utf-8") as f:
        line = f.readline()
    if not line:
        return []
    example = json.loads(line)
    if "schemaVersion" in example:  # bedrock-conversation-2024
        system = [{"role": "system", "content": s["text"]} for s in example.get("system", [])]
        users = [
            {"role": "user", "content": m["content"][0]["text"]} for m in example["messages"] if m["role"] == "user"
        ]
        return system + users[:1]
    messages = example["messages"] if "messages" in example else example["input"]["messages"]
    return [m for m in messages if m["role"] != "assistant"]
