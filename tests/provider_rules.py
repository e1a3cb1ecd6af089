"""An independent validator of the providers' documented dataset rules, written from their
documentation and kept apart from `flywheel.domain.dataset_checks` on purpose: the build's own
checker must agree with it, not with itself.

- OpenAI chat / preference JSONL: https://platform.openai.com/docs/guides/supervised-fine-tuning
  (lines of {"messages": [...]}, roles system/user/assistant, optional assistant weight 0|1,
  at least 10 examples), https://platform.openai.com/docs/guides/direct-preference-optimization
  ({"input": {"messages": [...]}, "preferred_output": [one assistant message],
  "non_preferred_output": [one assistant message]}), files up to 512 MB.
- Amazon Nova: https://docs.aws.amazon.com/nova/latest/userguide/fine-tune-prepare-data-understanding.html
  (schemaVersion, optional system [{"text"}], messages alternating user/assistant starting with
  user and ending with assistant, content [{"text"}], reserved keywords), DPO:
  https://docs.aws.amazon.com/nova/latest/userguide/nova-dpo.html (last assistant turn carries
  two candidates labelled "preferred" and "non-preferred"), 8 to 20,000 records.
"""

from __future__ import annotations

import json
from pathlib import Path

RESERVED = ("user:", "bot:", "assistant:", "system:", "<image>", "<video>", "[eos]")


def _openai_message(m: object, roles: tuple[str, ...]) -> list[str]:
    if not isinstance(m, dict):
        return ["message is not an object"]
    problems = []
    if m.get("role") not in roles:
        problems.append(f"role {m.get('role')!r}")
    if not isinstance(m.get("content"), str) or not m["content"]:
        problems.append("content must be a non-empty string")
    if "weight" in m and (m.get("role") != "assistant" or m["weight"] not in (0, 1)):
        problems.append("weight is 0 or 1 on assistant messages")
    return problems


def openai_sft_line(line: dict) -> list[str]:
    messages = line.get("messages")
    if set(line) != {"messages"} or not isinstance(messages, list):
        return ["a line is {'messages': [...]}"]
    problems = [p for m in messages for p in _openai_message(m, ("system", "user", "assistant"))]
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        problems.append("needs an assistant message to learn from")
    return problems


def openai_dpo_line(line: dict) -> list[str]:
    if set(line) != {"input", "preferred_output", "non_preferred_output"}:
        return ["a line is {'input', 'preferred_output', 'non_preferred_output'}"]
    messages = (line["input"] or {}).get("messages") if isinstance(line["input"], dict) else None
    if not isinstance(messages, list) or not messages:
        return ["input.messages"]
    problems = [p for m in messages for p in _openai_message(m, ("system", "user", "assistant"))]
    for key in ("preferred_output", "non_preferred_output"):
        out = line[key]
        if not isinstance(out, list) or len(out) != 1:
            problems.append(f"{key} holds one message")
        else:
            problems += _openai_message(out[0], ("assistant",))
    return problems


def _nova_texts(content: object) -> list[str] | None:
    if not isinstance(content, list) or not content:
        return None
    texts = [c.get("text") for c in content if isinstance(c, dict)]
    return (
        [str(t) for t in texts] if len(texts) == len(content) and all(isinstance(t, str) and t for t in texts) else None
    )


def nova_line(line: dict, preference: bool) -> list[str]:
    problems = []
    if not isinstance(line.get("schemaVersion"), str):
        problems.append("schemaVersion")
    texts: list[str] = []
    if "system" in line:
        system = _nova_texts(line["system"])
        problems += [] if system is not None else ["system is [{'text': ...}]"]
        texts += system or []
    messages = line.get("messages")
    if not isinstance(messages, list) or len(messages) < 2:
        return [*problems, "messages"]
    for i, m in enumerate(messages):
        if m.get("role") != ("user" if i % 2 == 0 else "assistant"):
            problems.append("roles alternate user/assistant from user")
        if preference and i == len(messages) - 1:
            candidates = m.get("candidates")
            if not isinstance(candidates, list) or len(candidates) != 2 or "content" in m:
                problems.append("last turn carries two candidates")
                continue
            if sorted(c.get("preferenceLabel", "") for c in candidates) != ["non-preferred", "preferred"]:
                problems.append("preferenceLabel")
            for c in candidates:
                t = _nova_texts(c.get("content"))
                problems += [] if t is not None else ["candidate content"]
                texts += t or []
        else:
            t = _nova_texts(m.get("content"))
            problems += [] if t is not None and "candidates" not in m else [f"messages[{i}].content"]
            texts += t or []
    if messages[-1].get("role") != "assistant":
        problems.append("ends with the assistant")
    lowered = " ".join(texts).lower()
    problems += [f"reserved keyword {k}" for k in RESERVED if k in lowered]
    return problems


def validate_file(path: Path, shape: str, *, role: str = "train") -> list[str]:
    """Problems of one file against the documented rules for `shape` (openai-sft, openai-dpo,
    nova-sft, nova-dpo); `role` is train or validation (record minimums apply to training)."""
    check = {
        "openai-sft": openai_sft_line,
        "openai-dpo": openai_dpo_line,
        "nova-sft": lambda line: nova_line(line, False),
        "nova-dpo": lambda line: nova_line(line, True),
    }[shape]
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    problems = [f"line {n}: {p}" for n, line in enumerate(lines, 1) for p in check(json.loads(line))]
    size = path.stat().st_size
    if shape.startswith("openai"):
        if role == "train" and len(lines) < 10:
            problems.append(f"{len(lines)} examples; OpenAI needs at least 10")
        if size > 512 * 1024 * 1024:
            problems.append("file over 512 MB")
    elif role == "train" and not 8 <= len(lines) <= 20_000:
        problems.append(f"{len(lines)} records; Nova takes 8 to 20,000")
    return problems
