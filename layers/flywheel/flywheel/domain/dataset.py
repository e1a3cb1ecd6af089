"""Turning outcomes into fine-tuning examples: cleaning, redaction, provider formats, pairing.

Pure functions over plain rows; the streaming, the files and the upload are done by callers.
An example is first built in a neutral shape (`Example`: system prompt, user prompt, one target
or a preferred/non-preferred pair) and written in a provider's format only at the end.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flywheel.domain.redaction import RedactionContext, Redactor, build_context, names_in
from flywheel.domain.reply_text import strip_quotes, strip_signature

SYSTEM_PROMPT = (
    "You write short, specific, personalised outbound sales emails. Use the lead's context and the brief, "
    "follow the requested framework and tone, and end with one clear ask."
)
FORMATS = ("openai-chat", "bedrock-conversation-2024")


@dataclass
class Example:
    """One training example before it takes a provider's shape."""

    outcome_ids: list[str]
    prompt: str
    targets: list[str]  # [target] for supervised, [preferred, non_preferred] for DPO
    system: str = SYSTEM_PROMPT
    meta: dict[str, str] = field(default_factory=dict)
    redactions: Counter[str] = field(default_factory=Counter)  # this example's replacements by placeholder

    def texts(self) -> list[str]:
        return [self.system, self.prompt, *self.targets]


# --- cleaning and redaction ---------------------------------------------------------------------


def context_of(row: dict[str, Any]) -> RedactionContext:
    """Everything known about the people of one message: the lead, the sender, colleagues named
    in the lead context, and the regions their phone numbers are written for. What is worked out
    from a name (its variants, skeletons) is cached by `build_context`: senders, companies and
    first names recur across messages, whole leads rarely do (the build reads in order of sending)."""
    lead_context = row.get("lead_context") or {}
    try:
        return build_context(
            lead={
                "first_name": row.get("lead_first_name"),
                "last_name": row.get("lead_last_name"),
                "company": row.get("lead_company"),
            },
            colleagues=names_in(lead_context),
            sender=row.get("sender"),
            regions=(
                row.get("lead_country"),
                lead_context.get("country") if isinstance(lead_context, Mapping) else None,
            ),
        )
    except TypeError as exc:  # a sender build_context cannot read: the build fails, saying which
        raise TypeError(f"outcome {row.get('outcome_id')}: {exc}") from exc


def message_body(body: str | None, sender: dict[str, Any] | None) -> str:
    """The message as the sender wrote it: quoted history (a follow-up quoting the lead's reply)
    and the signature block are cut; a cut signature leaves `{{signature}}` in its place."""
    if not body:
        return ""
    text = strip_quotes(body)  # the signature is handled next, keeping its closing line
    text, had_signature = strip_signature(text, (sender or {}).get("signature"))
    return f"{text}\n{{{{signature}}}}" if had_signature and text else text


PROMPT_HEADER = "Write an outbound email to {{first_name}} at {{company}}."
PROMPT_FIELDS = (
    ("Industry", "lead_industry"),
    ("Role", "lead_role"),
    ("Company size", "lead_company_size"),
    ("Campaign", "campaign_id"),
    ("Framework", "framework"),
    ("Tone", "tone"),
    ("Brief", "brief"),
)
# the words we write around the data (header, field labels, "Subject: "): the residual scan reads
# the data only, so a company called "Framework Computer" does not fail every build
_LABELS = "|".join(label for label, _ in PROMPT_FIELDS)
_OUR_WORDS = re.compile(rf"^(?:{re.escape(PROMPT_HEADER)}|(?:{_LABELS}|Subject): )", re.MULTILINE)


def examples_of(
    items: Sequence[tuple[dict[str, Any], ...]], redactor: Redactor, contexts: Sequence[tuple[RedactionContext, ...]]
) -> list[Example]:
    """An example of each item: a row (supervised) or a (preferred, non-preferred) pair of rows
    (DPO), read with its context(s). Each prompt is the request the model learns to answer (lead
    context and the brief, never the outcome), each target the message as sent. Every free-text
    field of every item passes the same redaction in one pass (each detector scans the texts of
    many messages together: `Redactor.redact_each`). Each example counts its own replacements
    (`Example.redactions`); the redactor counts them all, as always."""
    counts = [Counter[str]() for _ in items]
    requests = [
        (row, context, side == 0, counts[at])
        for at, (item, item_contexts) in enumerate(zip(items, contexts, strict=True))
        for side, (row, context) in enumerate(zip(item, item_contexts, strict=True))
    ]
    fields = [_fields(row) if with_prompt else [] for row, _, with_prompt, _ in requests]
    texts = [
        [value for _, value in row_fields] + [row.get("subject"), message_body(row.get("body"), row.get("sender"))]
        for row_fields, (row, _, _, _) in zip(fields, requests, strict=True)
    ]
    pairs, each = [], []
    for row_texts, (_, context, _, item_counts) in zip(texts, requests, strict=True):
        pairs += [(text, context) for text in row_texts]
        each += [item_counts] * len(row_texts)
    redacted = iter(redactor.redact_each(pairs, each))
    for item_counts in counts:
        redactor.counts.update(item_counts)
    written, frameworks = [], []
    for row_fields, row_texts in zip(fields, texts, strict=True):
        *values, subject, body = (next(redacted) for _ in row_texts)
        prompt = (
            PROMPT_HEADER
            + "\n"
            + "\n".join(f"{label}: {value}" for (label, _), value in zip(row_fields, values, strict=True))
        )
        written.append((prompt, f"Subject: {subject}\n\n{body}" if subject else body))
        # the framework is counted in the manifest, which leaves the build: it is free text, so it
        # is the prompt's redacted value (an item's first row is the one with a prompt)
        frameworks.append(
            next((v for (label, _), v in zip(row_fields, values, strict=True) if label == "Framework"), "")
        )
    out, at = [], 0
    for item, item_counts in zip(items, counts, strict=True):
        first = item[0]
        out.append(
            Example(
                [str(row["outcome_id"]) for row in item],
                written[at][0],
                [target for _, target in written[at : at + len(item)]],
                meta={
                    "label": str(first.get("training_label")),
                    "org": str(first.get("org_id")),
                    "framework": frameworks[at] or "none",
                },
                redactions=item_counts,
            )
        )
        at += len(item)
    return out


def _fields(row: dict[str, Any]) -> list[tuple[str, str]]:
    return [(label, str(row[key])) for label, key in PROMPT_FIELDS if row.get(key)]


def data_only(text: str) -> str:
    """A written text with our own words blanked (same length): what came from the data."""
    if text == SYSTEM_PROMPT:
        return ""
    return _OUR_WORDS.sub(lambda m: " " * len(m.group(0)), text)


def supervised_example(row: dict[str, Any], redactor: Redactor, context: RedactionContext | None = None) -> Example:
    return examples_of([(row,)], redactor, [(context or context_of(row),)])[0]


def preference_example(
    good: dict[str, Any],
    bad: dict[str, Any],
    redactor: Redactor,
    contexts: tuple[RedactionContext, RedactionContext] | None = None,
) -> Example:
    return examples_of([(good, bad)], redactor, [contexts or (context_of(good), context_of(bad))])[0]


# --- provider formats -----------------------------------------------------------------------------

# Amazon Nova fails a training job whose prompts contain these, per
# https://docs.aws.amazon.com/nova/latest/userguide/fine-tune-prepare-data-understanding.html
# ("User:, Bot:, Assistant:, System:, <image>, <video> and [EOS] are reserved keywords ... anywhere
# in the prompt"); the AWS sample validator linked from that guide also rejects Thought: and <unk>,
# and matches them as substrings, so "PowerUser:" and "ChatBot:" fail too. Matched here in any case.
NOVA_RESERVED = re.compile(r"(user|bot|assistant|system|thought)\s*:|\[eos\]|<(image|video|unk)>", re.IGNORECASE)


def neutralise_reserved(text: str) -> tuple[str, int]:
    """`System: x` -> `System - x`, `[EOS]` -> `EOS`, `<image>` -> `image`; and how many."""

    def swap(m: re.Match[str]) -> str:
        if m.group(1):
            return f"{m.group(0).rstrip(':').rstrip()} -"
        return m.group(0).strip("[]<>")

    return NOVA_RESERVED.subn(swap, text)


def to_openai(example: Example) -> dict[str, Any]:
    """OpenAI chat lines (supervised) or preference lines (DPO)."""
    prompt = [{"role": "system", "content": example.system}, {"role": "user", "content": example.prompt}]
    if len(example.targets) == 1:
        return {"messages": [*prompt, {"role": "assistant", "content": example.targets[0]}]}
    return {
        "input": {"messages": prompt},
        "preferred_output": [{"role": "assistant", "content": example.targets[0]}],
        "non_preferred_output": [{"role": "assistant", "content": example.targets[1]}],
    }


def to_nova(example: Example) -> tuple[dict[str, Any], int]:
    """Amazon Nova `bedrock-conversation-2024` lines; DPO puts the pair on the last assistant turn
    as `candidates` with `preferenceLabel` (https://docs.aws.amazon.com/nova/latest/userguide/nova-dpo.html).
    Returns the line and how many reserved keywords were neutralised."""
    system, n1 = neutralise_reserved(example.system)
    prompt, n2 = neutralise_reserved(example.prompt)
    targets = [neutralise_reserved(t) for t in example.targets]
    line: dict[str, Any] = {
        "schemaVersion": "bedrock-conversation-2024",
        "system": [{"text": system}],
        "messages": [{"role": "user", "content": [{"text": prompt}]}],
    }
    if len(targets) == 1:
        line["messages"].append({"role": "assistant", "content": [{"text": targets[0][0]}]})
    else:
        line["messages"].append(
            {
                "role": "assistant",
                "candidates": [
                    {"content": [{"text": targets[0][0]}], "preferenceLabel": "preferred"},
                    {"content": [{"text": targets[1][0]}], "preferenceLabel": "non-preferred"},
                ],
            }
        )
    return line, n1 + n2 + sum(n for _, n in targets)


# --- split -----------------------------------------------------------------------------------------


def is_validation(key: str, fraction: float) -> bool:
    """A deterministic split: the same key always lands on the same side."""
    bucket = int(hashlib.sha256(str(key).encode()).hexdigest()[:8], 16) % 10_000
    return bucket < fraction * 10_000


def text_key(text: str) -> int:
    """A 63-bit key of a text after whitespace and case normalisation (exact duplicates)."""
    normalised = " ".join(text.lower().split())
    return int.from_bytes(hashlib.blake2b(normalised.encode(), digest_size=8).digest(), "little") >> 1


# --- preference pairs ---------------------------------------------------------------------------


def preference_group(row: dict[str, Any]) -> tuple[Any, ...]:
    """Messages written for the same campaign, segment and framework are comparable: within one
    organisation (campaign ids are the sender's own names; two organisations may both have "q4")."""
    return (
        row.get("org_id"),
        row.get("campaign_id"),
        row.get("lead_industry"),
        row.get("lead_role"),
        row.get("framework"),
    )


def is_preferred(row: dict[str, Any]) -> bool:
    return row.get("training_label") == "positive"


def is_rejected(row: dict[str, Any]) -> bool:
    """Negative outcomes, or delivered messages that never got a reply."""
    if row.get("training_label") == "negative":
        return True
    return row.get("replied_at") is None and row.get("delivered_at") is not None and not is_preferred(row)


def pair_group(rows: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Pair each preferred message with a rejected one of the same group, deterministically."""

    def order(row: dict[str, Any]) -> str:
        return hashlib.sha256(str(row["outcome_id"]).encode()).hexdigest()

    good = sorted((r for r in rows if is_preferred(r)), key=order)
    bad = sorted((r for r in rows if is_rejected(r)), key=order)
    yield from zip(good, bad, strict=False)


def grouped(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive rows with the same preference group (the query orders by it)."""
    current: list[dict[str, Any]] = []
    key: tuple[Any, ...] | None = None
    for row in rows:
        row_key = preference_group(row)
        if current and row_key != key:
            yield current
            current = []
        key = row_key
        current.append(row)
    if current:
        yield current
