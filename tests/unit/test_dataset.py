"""Dataset building blocks: redaction, examples, de-duplication, split, format checks."""

from __future__ import annotations

import json

import pytest

from flywheel.domain import dataset as ds
from flywheel.domain.dataset_checks import check_example, check_lines, cost_estimate

ROW = {"outcome_id": "7d1c", "campaign_id": "q4", "lead_industry": "fintech", "lead_role": "cfo",
       "lead_company_size": "201-1000", "framework": "PAS", "tone": "warm", "brief": "close pain at Northwind",
       "subject": "Dana, Northwind's close", "body": "Hi Dana,\nNorthwind could close faster. Call +44 20 7946 0958 "
       "or https://cal.example.com/sam?utm_content=abc or https://acme.example/case-study.\n-- sam@acme.example",
       "lead_first_name": "Dana", "lead_last_name": "Reyes", "lead_company": "Northwind",
       "training_label": "positive", "quality_score": 0.9}


def test_redaction_replaces_personal_data_in_prompt_and_target() -> None:
    redactor = ds.Redactor()
    example = ds.supervised_example(ROW, redactor)
    text = json.dumps(example)
    for leaked in ("Dana", "Northwind", "7946", "utm_content", "sam@acme.example"):
        assert leaked not in text
    assert "https://acme.example/case-study" in text  # a plain link carries no one's identity
    assert "{{first_name}}" in text and "{{company}}" in text and "{{phone}}" in text and "{{link}}" in text
    assert redactor.counts == {"tracking_url": 1, "email": 1, "phone": 1, "first_name": 2, "last_name": 0,
                               "company": 3}


def test_the_target_is_the_message_only_never_the_outcome() -> None:
    example = ds.supervised_example({**ROW, "training_label": "positive", "deal_status": "won"}, ds.Redactor())
    assistant = example["messages"][-1]["content"]
    assert assistant.startswith("Subject: {{first_name}}, {{company}}'s close")
    assert "won" not in assistant and "positive" not in json.dumps(example)


def test_near_and_exact_duplicates_are_dropped() -> None:
    dedupe = ds.NearDuplicateFilter()
    base = ("Hi {{first_name}}, teams like {{company}} cut month-end close by three days with automated "
            "reconciliation and fewer spreadsheets. Worth a short call next week to see how?")
    assert dedupe.admit(base)
    assert not dedupe.admit(base.upper())  # exact after normalisation
    assert not dedupe.admit(base.replace("three days", "three full days"))  # near
    assert dedupe.admit("Quick question about your AP automation roadmap for next year and the team behind it.")
    assert dedupe.dropped == {"exact": 1, "near": 1}


def test_split_is_deterministic_and_near_the_fraction() -> None:
    ids = [f"outcome-{i}" for i in range(5000)]
    first = [ds.is_validation(i, 0.1) for i in ids]
    assert first == [ds.is_validation(i, 0.1) for i in ids]
    assert 0.08 < sum(first) / len(ids) < 0.12


def test_preference_pairs_stay_within_their_group() -> None:
    rows = [{**ROW, "outcome_id": f"g{i}", "training_label": label, "delivered_at": "x", "replied_at": None}
            for i, label in enumerate(["positive", "negative", "positive", "neutral"])]
    other = {**ROW, "outcome_id": "h1", "framework": "AIDA", "training_label": "negative", "delivered_at": "x"}
    groups = list(ds.grouped([*rows, other]))
    assert [len(g) for g in groups] == [4, 1]
    pairs = list(ds.pair_group(groups[0]))
    assert len(pairs) == 2 and all(g["training_label"] == "positive" for g, _ in pairs)
    example = ds.preference_example(*pairs[0], ds.Redactor())
    assert check_example(example, "dpo") == []


def test_bedrock_conversion_passes_its_format_check() -> None:
    example = ds.to_bedrock_conversation(ds.supervised_example(ROW, ds.Redactor()))
    assert check_example(example, "bedrock-conversation-2024") == []
    assert example["system"][0]["text"] == ds.SYSTEM_PROMPT


@pytest.mark.parametrize(("line", "problem"), [
    ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant turn"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]}, "empty content"),
    ({"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}, "role must be"),
    ({"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}, "last message"),
    ({"messages": [{"role": "user", "content": "y"}, {"role": "assistant", "content": "x", "weight": 2}]}, "weight"),
])
def test_format_problems_are_named(line: dict, problem: str) -> None:
    assert any(problem in p for p in check_example(line, "supervised"))


def test_check_lines_counts_tokens_and_flags_long_examples() -> None:
    good = json.dumps(ds.supervised_example(ROW, ds.Redactor()))
    long = json.dumps({"messages": [{"role": "user", "content": "x " * 5000}, {"role": "assistant", "content": "y"}]})
    report = check_lines([good, long, "not json", ""], "supervised", token_limit=1000)
    assert (report.examples, report.invalid, report.over_limit) == (3, 1, 1)
    assert report.token_method in ("tiktoken:o200k_base", "estimate:utf8_bytes/3")
    assert report.max_tokens > 1000 > report.min_tokens > 20


def test_cost_estimate() -> None:
    assert cost_estimate(2_000_000, "gpt-4o-mini-2024-07-18", 3, {"gpt-4o-mini-2024-07-18": 3.0})["usd"] == 18.0
    assert cost_estimate(10, "unknown-model", 3, {})["usd"] is None


def test_the_openai_tuner_drives_azure_openai_too() -> None:
    import openai

    from flywheel.clients.finetune import OpenAIFineTuner

    azure = OpenAIFineTuner.from_settings("key", azure_endpoint="https://acme.openai.azure.com",
                                          azure_api_version="2025-04-01-preview")
    assert isinstance(azure.sdk, openai.AzureOpenAI)
    assert isinstance(OpenAIFineTuner.from_settings("key").sdk, openai.OpenAI)
