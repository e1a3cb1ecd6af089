"""The planted near-duplicate set: hand-written emails (tests/data/dedupe_bases.json) and the
edits a sender really makes to a template before sending it again (two or three words swapped
for synonyms, a word added or dropped, another greeting, a number changed, two sentences swapped).

Ground truth by construction: an email and its edits are duplicates; emails of the same campaign
family (same greeting, opener and ask, different body) are not; and, the hardest case, one template
sent with two different personalised opening lines (what an AI SDR writes for two leads) gives two
different emails, not a duplicate. The tuning and blind families have their own opening lines, the
blind ones written before the threshold was measured."""

from __future__ import annotations

import json
import random
import re
from itertools import combinations

from tests.conftest import ROOT

BASES = json.loads((ROOT / "tests" / "data" / "dedupe_bases.json").read_text())["families"]
TUNING_FAMILIES = {1, 2, 3, 4, 5, 6}
SYNONYMS = {
    "quick": "short",
    "short": "brief",
    "call": "chat",
    "week": "month",
    "help": "support",
    "usually": "often",
    "probably": "likely",
    "team": "group",
    "teams": "groups",
    "customers": "clients",
    "faster": "quicker",
    "cut": "reduced",
    "fix": "solve",
    "best": "top",
    "exactly": "precisely",
    "every": "each",
    "show": "tell",
    "fast": "quickly",
    "costs": "expenses",
    "useful": "helpful",
    "find": "locate",
    "hours": "time",
    "automatically": "for you",
    "gives": "offers",
    "first": "initial",
    "answer": "reply",
    "look": "glance",
    "share": "send",
    "conversation": "chat",
    "similar": "comparable",
    "hard": "difficult",
    "large": "big",
}
NUMBERS = {
    "three": "four",
    "two": "three",
    "forty": "fifty",
    "ten": "twelve",
    "fifteen": "twenty",
    "seven": "six",
    "ninety": "sixty",
    "sixty": "seventy",
    "20-minute": "30-minute",
    "third": "quarter",
}
PERSONALISED = {  # opening lines written for one lead each
    False: [
        "Congrats on the Series B announcement last week, that is a big step for the finance team.",
        "I saw your post about moving the close from ten days to five and wanted to share how others did it.",
        "Your new warehouse in Leeds caught my eye, congratulations on the expansion this quarter.",
        "Noticed you are hiring three revenue accountants, which usually means the close is getting heavy.",
        "Loved your talk at SaaStr on pricing experiments, especially the part about annual plans.",
        "Saw that you just rolled out NetSuite across the group, which is often when reconciliation pain shows up.",
    ],
    True: [
        "Read the interview your CEO gave about doubling the customer base by next spring, great ambition.",
        "Saw on LinkedIn that you took over the operations team in March, congratulations on the new role.",
        "Your job ad for a head of procurement mentions supplier onboarding taking months, which stood out.",
        "Heard your podcast episode on scaling support without hiring, the point about macros was spot on.",
        "Noticed your team moved from spreadsheets to a proper data warehouse last quarter, a big milestone.",
        "Your annual report mentions expanding into three new European markets, which usually strains finance.",
    ],
}
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
                    text, budget = new + text[len(old) :], budget - 1
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


def personalised(email: str, opener: str) -> str:
    """The template with a personal opening line after its greeting sentence."""
    sentences = re.split(r"(?<=[.!?])\s+", email)
    return " ".join([sentences[0], opener, *sentences[1:]])


def planted(blind: bool, variants: int = 3, seed: int = 11, personal: int = 0) -> tuple[list[str], list[int]]:
    """Texts and, for each, the id of the email it was made from (its duplicate group). With
    `personal`, each email is also sent as that many personalised versions (each a different
    email, with `variants` edits of its own)."""
    rng = random.Random(seed)
    texts: list[str] = []
    groups: list[int] = []
    for family in BASES:
        if (family["family"] in TUNING_FAMILIES) == blind:
            continue
        for email in family["emails"]:
            for text in [email, *(personalised(email, o) for o in rng.sample(PERSONALISED[blind], personal))]:
                group = len(set(groups))
                texts.append(text)
                groups.append(group)
                for _ in range(variants):
                    texts.append(edit(text, rng))
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
    return {
        "precision": tp / len(predicted) if predicted else 1.0,
        "recall": tp / len(truth),
        "duplicates_dropped": float((~kept & ~originals).sum() / (~originals).sum()),
        "distinct_kept": float(len({groups[i] for i in np.nonzero(kept)[0]}) / len(set(groups))),
        "pairs": float(len(truth)),
    }
