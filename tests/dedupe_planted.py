"""The planted near-duplicate set: hand-written emails (tests/data/dedupe_bases.json) and the
edits a sender really makes to a template before sending it again (two or three words swapped
for synonyms, a word added or dropped, another greeting, a number changed, two sentences swapped).

Ground truth by construction: an email and its edits are duplicates; emails of the same campaign
family (same greeting, opener and ask, different body) are not."""

from __future__ import annotations

import json
import random
import re
from itertools import combinations

from tests.conftest import ROOT

BASES = json.loads((ROOT / "tests" / "data" / "dedupe_bases.json").read_text())["families"]
TUNING_FAMILIES = {1, 2, 3, 4, 5, 6}
SYNONYMS = {
    "quick": "short", "short": "brief", "call": "chat", "week": "month", "help": "support", "usually": "often",
    "probably": "likely", "team": "group", "teams": "groups", "customers": "clients", "faster": "quicker",
    "cut": "reduced", "fix": "solve", "best": "top", "exactly": "precisely", "every": "each", "show": "tell",
    "fast": "quickly", "costs": "expenses", "useful": "helpful", "find": "locate", "hours": "time",
    "automatically": "for you", "gives": "offers", "first": "initial", "answer": "reply", "look": "glance",
    "share": "send", "conversation": "chat", "similar": "comparable", "hard": "difficult", "large": "big",
}
NUMBERS = {"three": "four", "two": "three", "forty": "fifty", "ten": "twelve", "fifteen": "twenty",
           "seven": "six", "ninety": "sixty", "sixty": "seventy", "20-minute": "30-minute", "third": "quarter"}
GREETINGS = [("Hi ", "Hello "), ("Hello ", "Hi "), ("Hey ", "Hi "), ("Dear ", "Hello "), ("Good morning ", "Hi ")]
FILLERS = ["really", "just", "actually", "quickly", "simply", "also"]


def _swap_words(text: str, rng: random.Random, table: dict[str, str], limit: int) -> tuple[str, int]:
    present = [w for w in table if re.search(rf"\b{re.escape(w)}\b", text)]
    rng.shuffle(present)
    changed = 0
    for word in present[:limit]:
        text = re.sub(rf"\b{re.escape(word)}\b", table[word], text, count=1)
        changed += 1
    return text, changed


def edit(text: str, rng: random.Random) -> str:
    """One realistic re-send of `text`: one to three operations, at most three words changed."""
    operations = rng.sample(["synonyms", "insert", "delete", "greeting", "number", "swap_sentences"], rng.randint(1, 3))
    budget = 3
    for op in operations:
        if budget <= 0 and op != "swap_sentences":
            continue
        if op == "synonyms":
            text, n = _swap_words(text, rng, SYNONYMS, min(budget, rng.randint(1, 3)))
            budget -= n
        elif op == "number":
            text, n = _swap_words(text, rng, NUMBERS, 1)
            budget -= n
        elif op == "greeting":
            for old, new in GREETINGS:
                if text.startswith(old):
                    text, budget = new + text[len(old):], budget - 1
                    break
        elif op in ("insert", "delete"):
            words = text.split(" ")
            k = rng.randint(3, len(words) - 3)
            if op == "insert":
                words.insert(k, rng.choice(FILLERS))
            elif "{{" not in words[k]:
                del words[k]
            text, budget = " ".join(words), budget - 1
        else:
            sentences = re.split(r"(?<=[.!?])\s+", text)
            if len(sentences) >= 4:
                i = rng.randint(1, len(sentences) - 3)
                sentences[i], sentences[i + 1] = sentences[i + 1], sentences[i]
                text = " ".join(sentences)
    return text


def planted(blind: bool, variants: int = 3, seed: int = 11) -> tuple[list[str], list[int]]:
    """Texts and, for each, the id of the email it was made from (its duplicate group)."""
    rng = random.Random(seed)
    texts, groups = [], []
    for family in BASES:
        if (family["family"] in TUNING_FAMILIES) == blind:
            continue
        for email in family["emails"]:
            group = len(set(groups))
            texts.append(email)
            groups.append(group)
            for _ in range(variants):
                texts.append(edit(email, rng))
                groups.append(group)
    return texts, groups


def pair_scores(texts: list[str], groups: list[int], threshold: float) -> dict[str, float]:
    """Pair-level precision and recall of `similar_pairs` at `threshold`, and the item-level
    result of keeping one text per cluster (duplicates dropped, distinct emails lost)."""
    import numpy as np

    from flywheel.domain import near_duplicates as nd

    sigs = nd.signatures(texts)
    left, right, _ = nd.similar_pairs(sigs, threshold)
    predicted = set(zip(left.tolist(), right.tolist(), strict=True))
    truth = {(i, j) for i, j in combinations(range(len(texts)), 2) if groups[i] == groups[j]}
    tp = len(predicted & truth)
    clusters = nd.components(len(texts), [(left, right)])
    kept = clusters == np.arange(len(texts))
    first_of_group = {g: i for i, g in reversed(list(enumerate(groups)))}
    originals = np.array([first_of_group[g] == i for i, g in enumerate(groups)])
    return {"precision": tp / len(predicted) if predicted else 1.0, "recall": tp / len(truth),
            "duplicates_dropped": float((~kept & ~originals).sum() / (~originals).sum()),
            "distinct_kept": float(len({groups[i] for i in np.nonzero(kept)[0]}) / len(set(groups))),
            "pairs": float(len(truth))}
