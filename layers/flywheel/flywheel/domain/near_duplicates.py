"""Near-duplicate detection for training examples: MinHash over the set of words of a text, LSH
banding, and connected components, computed for a whole dataset at once with numpy.

A message re-sent with two or three words changed, a word added or dropped, or two sentences
swapped keeps almost all of its words (Jaccard of the word sets >= 0.86 on the planted edits),
while the same template sent with a different personalised opening line, which is a different
email, shares far fewer (<= 0.74); word 3-shingles could not tell those two apart (an edit breaks
up to nine shingles). The threshold was chosen from measurements on planted edits and personalised
siblings (`bench/dedupe_threshold.py`, README "Dataset"). Signatures are 64 uint32 per text (256
bytes): 200,000 examples need ~51 MB.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence

import numpy as np

PERMUTATIONS = 64
BANDS, ROWS = 32, 2  # 32 bands of 2 rows: a pair at Jaccard 0.85 becomes a candidate with certainty
DUPLICATE_THRESHOLD = 0.85  # estimated Jaccard of the word sets at or above which two texts are one example

_rng = np.random.default_rng(20_261_123)  # fixed: the same text always gets the same signature
_A = _rng.integers(1, 2**63, PERMUTATIONS, dtype=np.uint64) | np.uint64(1)
_B = _rng.integers(0, 2**63, PERMUTATIONS, dtype=np.uint64)
_WORD = re.compile(r"\{\{\w+\}\}|\w+")
_EMPTY = np.full(PERMUTATIONS, np.iinfo(np.uint32).max, dtype=np.uint32)


# the bytes no word holds (ASCII but letters, digits, `_` and the braces of a placeholder) as spaces
_SPACED = bytes(b if b >= 0x80 or chr(b).isalnum() or b in b"_{}" else 0x20 for b in range(256))


def words(text: str) -> set[bytes]:
    """The distinct words of a lower-cased text, UTF-8 encoded: what `_WORD.findall` finds in it.
    Split at the ASCII bytes no word holds (one C pass, 1.5x faster than the pattern); a piece
    that is not plain ASCII letters and digits (a placeholder, non-ASCII letters) is what
    the pattern finds in it, as a match never reaches past such a byte."""
    data = text.lower().encode("utf-8", "surrogatepass")  # a lone surrogate is no word, and no error
    found = set(data.translate(_SPACED).split())
    if not data.isascii() or b"{" in data or b"}" in data:
        odd = {piece for piece in found if not piece.isalnum()}
        found -= odd
        for piece in odd:
            found.update(word.encode() for word in _WORD.findall(piece.decode("utf-8", "surrogatepass")))
    return found


def signatures(texts: Sequence[str]) -> np.ndarray:
    """MinHash signatures, shape (len(texts), 64), uint32; a batch is hashed in one numpy pass.
    A text's set is its lower-cased words (placeholders such as `{{phone}}` are one word), each
    hashed with crc32."""
    parts = [np.fromiter(map(zlib.crc32, words(t)), dtype=np.uint64) for t in texts]
    sizes = np.array([len(p) for p in parts])
    out = np.tile(_EMPTY, (len(texts), 1))
    nonempty = sizes > 0
    if not nonempty.any():
        return out
    flat = np.concatenate([p for p in parts if len(p)])
    # multiply-shift universal hashing: (a*x + b) mod 2^64, top 32 bits
    hashed = ((flat[None, :] * _A[:, None] + _B[:, None]) >> np.uint64(32)).astype(np.uint32)
    starts = np.concatenate(([0], np.cumsum(sizes[nonempty])[:-1]))
    out[nonempty] = np.minimum.reduceat(hashed, starts, axis=1).T
    return out


def similarity(sigs: np.ndarray, left: np.ndarray, right: np.ndarray, chunk: int = 16_384) -> np.ndarray:
    """Estimated Jaccard similarity of each (left[k], right[k]) pair, `chunk` pairs at a time (a
    band of a templated dataset can pair every text: 400,000 pairs at once would copy 200 MB)."""
    out = np.zeros(len(left))
    for start in range(0, len(left), chunk):
        a, b = left[start : start + chunk], right[start : start + chunk]
        out[start : start + chunk] = np.count_nonzero(sigs[a] == sigs[b], axis=1) / sigs.shape[1]
    return out


def at_least(sigs: np.ndarray, left: np.ndarray, right: np.ndarray, threshold: float, head: int = 16) -> np.ndarray:
    """`similarity(...) >= threshold` for each pair, reading most pairs' first `head` values only:
    a pair that agrees on too few of them to reach the threshold even if every other value agreed
    cannot reach it (a band's candidates are mostly texts that share a template's common words)."""
    width = sigs.shape[1]
    keep = np.zeros(len(left), dtype=bool)
    for start in range(0, len(left), 16_384):
        a, b = left[start : start + 16_384], right[start : start + 16_384]
        agree = np.count_nonzero(sigs[a, :head] == sigs[b, :head], axis=1)
        possible = np.nonzero((agree + (width - head)) / width >= threshold)[0]
        keep[start + possible] = similarity(sigs, a[possible], b[possible]) >= threshold
    return keep


def similar_pairs(sigs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (left < right) whose estimated Jaccard is at least `threshold`, with that estimate.

    Candidates come from LSH banding: within each band, texts whose band matches are paired with
    the next one and with the first one of their group; each band's candidates are checked at
    once and only similar pairs are kept, so memory stays O(n) and nothing is quadratic: the pairs
    found so far are held once each (as `left * n + right`), not every band's (a templated dataset
    pairs most texts in every band: 32 times the pairs, sorted as rows, took 800 MB and 30 s a
    million texts)."""
    n = len(sigs)
    found = np.zeros(0, dtype=np.int64)  # sorted, each pair once
    arange = np.arange(n)
    for band in range(BANDS if n > 1 else 0):
        chunk = np.ascontiguousarray(sigs[:, band * ROWS : (band + 1) * ROWS])
        keys = chunk.view(np.uint64).ravel()
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        same = ordered[1:] == ordered[:-1]
        if not same.any():
            continue
        group_start = np.maximum.accumulate(np.where(np.concatenate(([True], ~same)), arange, 0))
        members = np.nonzero(group_start != arange)[0]
        left = np.concatenate((order[:-1][same], order[group_start[members]]))
        right = np.concatenate((order[1:][same], order[members]))
        pairs = np.minimum(left, right).astype(np.int64) * n + np.maximum(left, right)
        at = np.searchsorted(found, pairs)
        new = found[np.minimum(at, len(found) - 1)] != pairs if len(found) else np.ones(len(pairs), dtype=bool)
        pairs = pairs[new]  # a pair an earlier band found similar is not checked again
        found = np.union1d(found, pairs[at_least(sigs, left[new], right[new], threshold)])
    lefts, rights = np.divmod(found, max(n, 1))
    distinct = lefts != rights
    lefts, rights = lefts[distinct], rights[distinct]
    return lefts, rights, similarity(sigs, lefts, rights)


def components(n: int, edges: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Connected components: the label of each node is the smallest index in its component."""
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for left, right in edges:
        for a, b in zip(left.tolist(), right.tolist(), strict=True):
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(i) for i in range(n)], dtype=np.int64)
