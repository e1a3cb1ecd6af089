"""Dataset building blocks: examples, provider formats, limits, token counts, near-duplicates and
the split, the residual scan."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.domain import dataset as ds
from flywheel.domain import near_duplicates as nd
from flywheel.domain.dataset_checks import (
    MODEL_LIMITS,
    check_example,
    check_lines,
    cost_estimate,
    limits_for,
    record_texts,
)
from flywheel.domain.redaction import SENDER_FIELDS, Redactor, build_context
from flywheel.services.dataset import Staged, _assign_sides, _plan, residual_scan, split_key
from tests.dedupe_planted import pair_scores, planted
from tests.provider_rules import nova_line, openai_dpo_line, openai_sft_line

ROW = {
    "outcome_id": "7d1c",
    "org_id": "acme",
    "campaign_id": "abm-northwind-q4",
    "lead_industry": "fintech",
    "lead_role": "cfo",
    "lead_company_size": "201-1000",
    "framework": "PAS",
    "tone": "warm",
    "brief": "close pain at Northwind; Dana's assistant is Tom Becker (+44 20 7946 0958)",
    "subject": "Dana, Northwind's close",
    "body": "Hi Dana,\nNorthwind could close faster. Call +44 20 7946 0958 or book calendly.com/sam-lee/30min.\n"
    "Tom Becker said you own it.\n\nBest,\nSam Lee\nAccount Executive, Acme Robotics\nsam@acme.example",
    "lead_first_name": "Dana",
    "lead_last_name": "Reyes",
    "lead_company": "Northwind",
    "lead_country": "GB",
    "lead_context": {"assistant": "Tom Becker"},
    "sender": {"name": "Sam Lee", "title": "Account Executive", "company": "Acme Robotics", "country": "US"},
    "training_label": "positive",
    "quality_score": 0.9,
}
PLANTED = (
    "Dana",
    "Reyes",
    "Northwind",
    "northwind",
    "7946",
    "calendly",
    "Tom",
    "Becker",
    "Sam Lee",
    "Acme",
    "sam@acme.example",
    "Account Executive",
)


def test_the_example_carries_no_personal_data_in_prompt_or_target() -> None:
    redactor = Redactor()
    example = ds.supervised_example(ROW, redactor)
    text = json.dumps(ds.to_openai(example))
    assert [p for p in PLANTED if p in text] == []
    assert "Campaign: abm-{{company}}-q4" in example.prompt and "{{booking_link}}" in example.targets[0]
    assert example.targets[0].endswith("Best,\n{{signature}}")  # the signature block is cut
    assert redactor.counts["phone"] == 2 and redactor.counts["colleague_name"] == 2


def test_a_follow_up_quoting_the_leads_reply_carries_no_outcome_text() -> None:
    row = {
        **ROW,
        "body": "Hi Dana, following up on pricing.\n\nOn Mon, 6 Jan 2025 at 10:00, Dana Reyes "
        "<dana@northwind.example> wrote:\n> We signed with a competitor, please stop emailing.\n",
    }
    target = ds.supervised_example(row, Redactor()).targets[0]
    assert "competitor" not in target and "wrote" not in target and target.endswith("following up on pricing.")


def test_the_target_is_the_message_only_never_the_outcome() -> None:
    example = ds.supervised_example({**ROW, "deal_status": "won"}, Redactor())
    assert example.targets[0].startswith("Subject: {{first_name}}, {{company}}'s close")
    assert "won" not in json.dumps(ds.to_openai(example)) and "positive" not in example.prompt


def _pair() -> ds.Example:
    bad = {
        **ROW,
        "outcome_id": "9e2f",
        "lead_first_name": "Jonas",
        "lead_company": "Müller & Söhne AG",
        "subject": "Jonas, a question",
        "body": "Hallo Jonas, Müller & Söhne AG verliert Zeit beim Abschluss.",
    }
    return ds.preference_example(ROW, bad, Redactor())


def test_each_format_passes_the_independent_validator_and_the_builds_checker() -> None:
    sft, pair = ds.supervised_example(ROW, Redactor()), _pair()
    lines = {
        "openai-sft": ds.to_openai(sft),
        "openai-dpo": ds.to_openai(pair),
        "nova-sft": ds.to_nova(sft)[0],
        "nova-dpo": ds.to_nova(pair)[0],
    }
    independent = {
        "openai-sft": openai_sft_line,
        "openai-dpo": openai_dpo_line,
        "nova-sft": lambda x: nova_line(x, False),
        "nova-dpo": lambda x: nova_line(x, True),
    }
    for shape, line in lines.items():
        assert independent[shape](line) == [], shape
        assert check_example(line, shape) == [], shape
    nova_dpo = lines["nova-dpo"]["messages"][-1]
    assert nova_dpo["role"] == "assistant" and [c["preferenceLabel"] for c in nova_dpo["candidates"]] == [
        "preferred",
        "non-preferred",
    ]
    assert "Müller" not in json.dumps(lines["nova-dpo"], ensure_ascii=False)
    # each checker rejects the other provider's shape
    assert check_example(lines["openai-dpo"], "nova-dpo") and nova_line(lines["openai-dpo"], True)
    assert check_example(lines["nova-dpo"], "openai-dpo") and openai_dpo_line(lines["nova-dpo"])


def test_nova_reserved_keywords_are_neutralised_and_checked() -> None:
    example = ds.Example(["x"], "User: write to [EOS] <image>", ["Assistant: hello.\nSystem:ok"])
    line, count = ds.to_nova(example)
    text = json.dumps(line)
    assert count == 5 and "User -" in text and "[EOS]" not in text and "System:" not in text
    assert nova_line(line, False) == [] and check_example(line, "nova-sft") == []
    raw = {**line, "messages": [line["messages"][0], {"role": "assistant", "content": [{"text": "Bot: hi"}]}]}
    assert any("reserved" in p for p in check_example(raw, "nova-sft")) and nova_line(raw, False)


def test_token_counts_include_every_part_of_the_record() -> None:
    sft, pair = ds.supervised_example(ROW, Redactor()), _pair()
    for line in (ds.to_nova(sft)[0], ds.to_openai(sft)):
        assert ds.SYSTEM_PROMPT in record_texts(line) and len(record_texts(line)) == 3
    for line in (ds.to_nova(pair)[0], ds.to_openai(pair)):
        assert len(record_texts(line)) == 4  # system, user, preferred, non-preferred
    nova = check_lines([json.dumps(ds.to_nova(sft)[0])], "nova-sft", 32_000)
    openai = check_lines([json.dumps(ds.to_openai(sft))], "openai-sft", 65_536)
    without_system = check_lines([json.dumps({"messages": ds.to_openai(sft)["messages"][1:]})], "openai-sft", 65_536)
    assert nova.total_tokens == openai.total_tokens > without_system.total_tokens


def test_limits_come_from_the_chosen_providers_base_model() -> None:
    assert limits_for("gpt-4.1-mini-2025-04-14", "openai").example_tokens == 65_536
    assert limits_for("amazon.nova-micro-v1:0:128k", "bedrock").methods == {"supervised"}
    assert limits_for("amazon.nova-2-lite-v1:0:256k", "bedrock").validation is False
    unknown = limits_for("ft:gpt-4.1-mini:acme::abc", "openai")
    assert unknown.provider == "openai" and unknown.min_train == 10
    assert {m.provider for m in MODEL_LIMITS.values()} == {"openai", "bedrock"}
    assert cost_estimate(2_000_000, "gpt-4o-mini-2024-07-18", 3, {"gpt-4o-mini-2024-07-18": 3.0})["usd"] == 18.0
    assert cost_estimate(10, "unknown-model", 3, {})["usd"] is None


def test_the_near_duplicate_threshold_holds_on_the_blind_set() -> None:
    """Chosen on the tuning families (bench/dedupe_threshold.py); measured on the blind families,
    with personalised versions of each template as different emails, at 0.85: precision 0.985,
    recall 0.910, 99.3 % of edits dropped, 95.8 % of distinct emails kept (3-shingles at 0.4,
    before: 100 % dropped but 22.9 % kept, the personalised versions merged with their template)."""
    blind = pair_scores(*planted(blind=True, personal=2), nd.DUPLICATE_THRESHOLD)
    assert blind["precision"] >= 0.97 and blind["recall"] >= 0.89
    assert blind["duplicates_dropped"] >= 0.98 and blind["distinct_kept"] >= 0.94


def _staged(texts: list[str], prompts: list[str], second: list[str] | None = None) -> Staged:
    sides = [nd.signatures(texts)] + ([nd.signatures(second)] if second else [])
    return Staged(
        count=len(texts),
        sides=len(sides),
        signatures=sides,
        prompt_keys=np.array([ds.text_key(p) for p in prompts], dtype=np.int64),
        split_keys=np.array([split_key(f"outcome-{i}") for i in range(len(texts))], dtype=np.uint64),
    )


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=4, max_size=40), st.integers(0, 10_000), st.floats(0.1, 0.5))
def test_plan_keeps_one_per_cluster_and_never_splits_a_cluster_or_a_prompt(
    prompt_of: list[int], seed: int, fraction: float
) -> None:
    texts, groups = planted(blind=False, seed=seed)
    texts, groups = texts[: len(prompt_of)], groups[: len(prompt_of)]
    prompts = [f"prompt {p}" for p in prompt_of]
    plan = _plan(_staged(texts, prompts), fraction)
    kept = np.nonzero(plan.keep)[0]
    sigs = nd.signatures(texts)
    for i, j in combinations(kept.tolist(), 2):
        assert (sigs[i] == sigs[j]).mean() < nd.DUPLICATE_THRESHOLD  # no two near-duplicates survive
        if prompts[i] == prompts[j]:
            assert plan.validation[i] == plan.validation[j]  # a prompt never sits on both sides
    assert len({groups[i] for i in kept}) == len(set(groups))  # every distinct email keeps one copy


def test_dpo_dedupes_both_sides_and_drops_pairs_that_teach_nothing() -> None:
    texts, _ = planted(blind=True)
    a, a_edit, b, c, d = texts[0], texts[1], texts[4], texts[8], texts[12]
    preferred = [a, b, c, d]
    non_preferred = [c, a_edit, c.replace("quick", "short"), d]  # pairs 3 and 4 are one text twice
    plan = _plan(_staged(preferred, ["p1", "p2", "p3", "p4"], non_preferred), 0.1)
    # pair 2 rejects an edit of pair 1's preferred text: one cluster with pair 1, which is kept
    assert plan.keep.tolist() == [True, False, False, False]
    assert plan.dropped == {"near_duplicate": 1, "of_which_identical": 0, "degenerate_pair": 2}
    # without the cross-side link, both sides are still deduplicated on their own
    plan = _plan(_staged([a, b, a_edit], ["p1", "p2", "p3"], [c, d, texts[16]]), 0.1)
    assert plan.keep.tolist() == [True, True, False]
    plan = _plan(_staged([a, b, texts[16]], ["p1", "p2", "p3"], [c, d, c.replace("quick", "short")]), 0.1)
    assert plan.keep.tolist() == [True, True, False]


def test_the_residual_scan_names_examples_never_their_text(tmp_path: Path) -> None:
    context = build_context(lead={"first_name": "Dana", "last_name": "Reyes", "company": "Northwind"}, regions=["US"])
    clean = {"messages": [{"role": "user", "content": "Hi {{first_name}}"}, {"role": "assistant", "content": "ok"}]}
    leaky = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "call 415 555 0132, Dana"}]
    }
    data, scan = tmp_path / "train.jsonl", tmp_path / "train.scan.jsonl"
    data.write_text(json.dumps(clean) + "\n" + json.dumps(leaky) + "\n")
    sidecar = {"regions": list(context.regions), "terms": [list(t) for t in context.terms]}
    scan.write_text(
        json.dumps({"ids": ["o-1"], "scan": [sidecar]}) + "\n" + json.dumps({"ids": ["o-2"], "scan": [sidecar]}) + "\n"
    )
    report = residual_scan([(data, scan)])
    assert report["passed"] is False and report["hits"] == 1 and report["offending_ids"] == ["o-2"]
    assert report["by_detector"] == {"phone": 1, "known_entity": 1}
    assert "Dana" not in json.dumps(report) and "0132" not in json.dumps(report)


def test_reserved_keywords_inside_words_are_neutralised_too() -> None:
    """AWS's dataset validator (linked from the Nova data-preparation guide) rejects "User:" and
    the others anywhere in a text, as substrings: "PowerUser:" and "ChatBot:" fail the job."""
    example = ds.Example(["x"], "Brief: PowerUser: yes; ChatBot: no; SubSystem: on", ["Our end-user: happy. EOS"])
    line, count = ds.to_nova(example)
    assert count == 4 and nova_line(line, False) == [] and check_example(line, "nova-sft") == []
    text = json.dumps(line)
    assert not any(k in text for k in ("User:", "Bot:", "System:", "user:"))


def test_a_french_outlook_follow_up_carries_no_outcome_text() -> None:
    row = {
        **ROW,
        "body": "Bonjour Dana,\nvoici le devis.\n\nCordialement,\nSam\n\nDe : Dana Reyes <dana@northwind.example>"
        "\nEnvoyé : lundi 6 janvier 2025 10:00\nObjet : RE: devis\n\nNous avons signé avec un concurrent.",
    }
    target = ds.supervised_example(row, Redactor()).targets[0]
    assert "concurrent" not in target and "Envoyé" not in target and target.endswith("Cordialement,\n{{signature}}")


def test_the_scan_does_not_flag_our_own_template_words(tmp_path: Path) -> None:
    """A company called "Framework Computer" or a colleague called "Brief" is not found in the
    prompt's labels: the scan reads what came from the data, not the words we put around it."""
    row = {
        **ROW,
        "lead_company": "Framework Computer Inc.",
        "lead_context": {"assistant": "Tone Brief"},
        "framework": "PAS",
        "tone": "warm",
    }
    example = ds.supervised_example(row, Redactor())
    assert "Framework: PAS" in example.prompt and "Tone: warm" in example.prompt
    data, scan = tmp_path / "train.jsonl", tmp_path / "train.scan.jsonl"
    data.write_text(json.dumps(ds.to_openai(example)) + "\n")
    context = ds.context_of(row)
    scan.write_text(
        json.dumps(
            {"ids": ["o-1"], "scan": [{"regions": list(context.regions), "terms": [list(t) for t in context.terms]}]}
        )
        + "\n"
    )
    assert residual_scan([(data, scan)])["passed"]
    leaky = {**ds.to_openai(example)}
    leaky["messages"][2]["content"] += "\nSay hi to Tone Brief at Framework."
    data.write_text(json.dumps(leaky) + "\n")
    assert residual_scan([(data, scan)])["hits"] == 1


def test_dpo_drops_a_pair_whose_preferred_text_is_rejected_in_another_pair() -> None:
    """The same email preferred in one pair and rejected in another teaches the model both ways."""
    texts, _ = planted(blind=True)
    a, a_edit, b, c = texts[0], texts[1], texts[4], texts[8]
    plan = _plan(_staged([a, b], ["p1", "p2"], [c, a_edit]), 0.1)
    assert plan.keep.tolist() == [True, False]


def test_names_in_a_context_are_read_whatever_python_shape_holds_them() -> None:
    """A lead context or a sender from a Python caller (tuples, sets, a Mapping that is not a dict)
    is read as JSON would be; a sender that is not an object at all fails the build rather than
    leave its name in the text."""
    from collections import UserDict

    row = {
        **ROW,
        "brief": "ask Jane Doe and Bob Roe, cc Kim Li",
        "lead_context": {"assistant": ("Jane Doe", "Bob Roe"), "colleagues": ({"name": "Kim Li"},)},
        "sender": UserDict(ROW["sender"]),  # type: ignore[call-overload]
    }
    example = ds.supervised_example(row, Redactor())
    for name in ("Jane", "Doe", "Bob", "Roe", "Kim", "Sam Lee"):
        assert name not in example.prompt + example.targets[0], name
    with_set = ds.supervised_example({**row, "lead_context": {"assistant": {"Jane Doe"}}}, Redactor())
    assert "Jane" not in with_set.prompt
    for sender in ("Sam Lee", ["Sam Lee"]):
        with pytest.raises(TypeError, match="outcome 7d1c: the sender is not an object"):
            ds.context_of({**row, "sender": sender})
    for field in SENDER_FIELDS:
        with pytest.raises(TypeError, match=f"outcome 7d1c: the sender's {field} is not text"):
            ds.context_of({**row, "sender": {**ROW["sender"], field: ["Zeta Labs"]}})  # type: ignore[dict-item]


def test_the_manifest_counts_frameworks_without_the_free_text_of_the_row() -> None:
    row = {**ROW, "framework": "Challenger for Dana Reyes"}
    redactor = Redactor()
    example = ds.supervised_example(row, redactor)
    assert example.meta["framework"] == "Challenger for {{first_name}} {{last_name}}"
    # counted once, where it is written (the prompt's Framework line), not again for the manifest
    plain = Redactor()
    ds.supervised_example(ROW, plain)
    assert sum((redactor.counts - plain.counts).values()) == 1
    assert ds.supervised_example({**row, "framework": None}, Redactor()).meta["framework"] == "none"


def test_minhash_signatures_are_the_minimum_of_each_permutation_over_the_word_set() -> None:
    """The batched signatures equal the definition, computed text by text in plain Python:
    for each permutation (a*x + b mod 2^64, top 32 bits), the minimum over the crc32 of the
    text's distinct lower-cased words; an empty text gets the all-ones signature."""
    import re
    import zlib

    texts = ["Hi {{first_name}}, close takes 11 days.", "hi HI hi", "", "Ünïcode wörds, ünïcode!", "a b c d e"]
    got = nd.signatures(texts)
    for text, row in zip(texts, got, strict=True):
        words = {w for w in re.findall(r"\{\{\w+\}\}|\w+", text.lower())}
        for k in range(nd.PERMUTATIONS):
            a, b = int(nd._A[k]), int(nd._B[k])
            want = min(((a * zlib.crc32(w.encode()) + b) % 2**64) >> 32 for w in words) if words else 2**32 - 1
            assert int(row[k]) == want


WORD_PIECES = [
    "a",
    "Z",
    "é",
    "İ",
    "ß",
    "Σ",
    "東",
    "7",
    "_",
    "{",
    "}",
    "{{",
    "}}",
    "{{x}}",
    " ",
    "\n",
    ".",
    "-",
    "’",
    "\xa0",
    "\u2003",
    "\x1f",
    "\ud800",  # a lone surrogate is no word (and no error)
]


@given(st.lists(st.sampled_from(WORD_PIECES), max_size=40))
@settings(max_examples=500, deadline=None)
def test_the_words_of_a_text_are_what_the_word_pattern_finds(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert nd.words(text) == {w.encode() for w in nd._WORD.findall(text.lower())}


def test_the_words_of_the_planted_texts_are_what_the_word_pattern_finds() -> None:
    texts, _ = planted(blind=True)
    for text in [*texts, str(ROW["body"]), str(ROW["brief"]), "Grüße aus Köln, {{first_name}}_x {{a}} {{ b }}"]:
        assert nd.words(text) == {w.encode() for w in nd._WORD.findall(text.lower())}, text


def test_the_split_key_puts_an_example_where_is_validation_says() -> None:
    import hashlib

    ids = [f"outcome-{i}" for i in range(2000)]
    for fraction in (0.05, 0.1, 0.5):
        assert [((split_key(i) >> 32) % 10_000 < fraction * 10_000) for i in ids] == [
            ds.is_validation(i, fraction) for i in ids
        ]
    by_key = sorted(ids, key=split_key)
    assert by_key == sorted(ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())


def test_the_similarity_shortcut_keeps_exactly_the_pairs_at_the_threshold() -> None:
    rng = np.random.default_rng(5)
    base = rng.integers(0, 2**32, (50, nd.PERMUTATIONS), dtype=np.uint64).astype(np.uint32)
    sigs = base[rng.integers(0, 50, 4000)]
    flip = rng.random(sigs.shape) < rng.choice([0.02, 0.1, 0.15, 0.2, 0.5, 0.9], (len(sigs), 1))
    sigs = np.where(flip, rng.integers(0, 2**32, sigs.shape, dtype=np.uint64).astype(np.uint32), sigs)
    left, right = rng.integers(0, len(sigs), 60_000), rng.integers(0, len(sigs), 60_000)
    for threshold in (nd.DUPLICATE_THRESHOLD, 0.5, 0.9, 1.0):
        want = nd.similarity(sigs, left, right) >= threshold
        assert want.any() and not want.all()
        assert (nd.at_least(sigs, left, right, threshold) == want).all()


def plain_similar_pairs(sigs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`nd.similar_pairs` as first written: every band's kept pairs gathered, then made unique."""
    n, lefts, rights = len(sigs), [], []
    arange = np.arange(n)
    for band in range(nd.BANDS if n > 1 else 0):
        keys = np.ascontiguousarray(sigs[:, band * nd.ROWS : (band + 1) * nd.ROWS]).view(np.uint64).ravel()
        order = np.argsort(keys, kind="stable")
        same = keys[order][1:] == keys[order][:-1]
        if not same.any():
            continue
        group_start = np.maximum.accumulate(np.where(np.concatenate(([True], ~same)), arange, 0))
        members = np.nonzero(group_start != arange)[0]
        left = np.concatenate((order[:-1][same], order[group_start[members]]))
        right = np.concatenate((order[1:][same], order[members]))
        keep = nd.similarity(sigs, left, right) >= threshold
        lefts.append(np.minimum(left[keep], right[keep]))
        rights.append(np.maximum(left[keep], right[keep]))
    if not lefts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    pairs = np.unique(np.stack([np.concatenate(lefts), np.concatenate(rights)], axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return pairs[:, 0], pairs[:, 1], nd.similarity(sigs, pairs[:, 0], pairs[:, 1])


def plain_assign_sides(groups: np.ndarray, kept: np.ndarray, split_keys: np.ndarray, fraction: float) -> np.ndarray:
    """`_assign_sides` as first written, group by group in Python."""
    sizes: dict[int, int] = {}
    for g in groups[kept].tolist():
        sizes[g] = sizes.get(g, 0) + 1
    budget = min(int(np.ceil(2 * fraction * len(kept))), len(kept) - 1)
    chosen: set[int] = set()
    ordered = sorted(sizes, key=lambda g: (int(split_keys[g]), g))
    for g in ordered:
        if (int(split_keys[g]) >> 32) % 10_000 < fraction * 10_000 and sizes[g] <= budget:
            chosen.add(g)
            budget -= sizes[g]
    if not chosen and fraction > 0 and len(sizes) > 1:
        chosen = set([g for g in ordered if sizes[g] <= budget][:1])
    return np.isin(groups, list(chosen))


def templated(n: int, seed: int) -> np.ndarray:
    """Signatures of a templated dataset: copies and near-copies of a few hundred texts."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**32, (max(n // 8, 1), nd.PERMUTATIONS), dtype=np.uint64).astype(np.uint32)
    sigs = base[rng.integers(0, len(base), n)]
    flip = rng.random(sigs.shape) < rng.choice([0.0, 0.02, 0.1, 0.3, 1.0], (n, 1))
    return np.where(flip, rng.integers(0, 2**32, sigs.shape, dtype=np.uint64).astype(np.uint32), sigs)


def test_similar_pairs_and_the_split_are_what_the_plain_versions_give() -> None:
    for n, seed in [(0, 1), (1, 1), (2, 1), (50, 2), (3000, 3), (3000, 4)]:
        sigs = templated(n, seed)
        for threshold in (nd.DUPLICATE_THRESHOLD, 0.5):
            got, want = nd.similar_pairs(sigs, threshold), plain_similar_pairs(sigs, threshold)
            assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(got, want, strict=True))
        rng = np.random.default_rng(seed)
        groups = nd.components(n, [(rng.integers(0, max(n, 1), n // 3), rng.integers(0, max(n, 1), n // 3))])
        keys = rng.integers(0, 2**63, n, dtype=np.uint64)
        for kept in (np.arange(n), np.nonzero(rng.random(n) < 0.7)[0]):
            for fraction in (0.0, 0.1, 0.5):
                assert np.array_equal(
                    _assign_sides(groups, kept, keys, fraction), plain_assign_sides(groups, kept, keys, fraction)
                )


def test_the_plan_holds_the_similar_pairs_not_every_bands_candidates() -> None:
    """A templated dataset (half the examples copies of another) makes each of the 32 bands pair most
    examples; the plan keeps only the similar pairs found so far, not every band's candidates."""
    import tracemalloc

    n = 100_000
    sigs = templated(n, 7)
    staged = Staged(
        count=n,
        signatures=[sigs],
        prompt_keys=np.arange(n, dtype=np.int64),
        split_keys=np.random.default_rng(7).integers(0, 2**63, n, dtype=np.uint64),
    )
    tracemalloc.start()
    try:
        _plan(staged, 0.1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / n < 400, f"{peak / n:.0f} bytes an example"


def test_two_organisations_with_one_campaign_id_form_two_preference_groups() -> None:
    """Adjacent rows of the same campaign, segment and framework but of two organisations (the query
    orders by organisation first, so one's last group can meet the other's first) are never one
    group: their messages are not comparable."""
    key = {"campaign_id": "q4", "lead_industry": "saas", "lead_role": "cfo", "framework": "PAS"}
    rows = [
        {**key, "org_id": "acme", "outcome_id": "a1", "training_label": "positive"},
        {**key, "org_id": "globex", "outcome_id": "g1", "training_label": "negative"},
    ]
    assert [[r["org_id"] for r in group] for group in ds.grouped(rows)] == [["acme"], ["globex"]]
    assert [pair for group in ds.grouped(rows) for pair in ds.pair_group(group)] == []
