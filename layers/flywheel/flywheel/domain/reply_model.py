"""The offline reply model: a linear classifier over word and character n-grams, scored with numpy.

It is trained by `flywheel.local.train_classifier` (scikit-learn, a dev dependency) on the labelled
corpus and exported to `flywheel/data/reply_model.npz`: vocabulary, idf weights, one weight row per
category and the intercepts. The features are computed here, by the same function at training and at
run time, so the two can never drift apart.
"""

from __future__ import annotations

import io
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

FEATURE_VERSION = 1
_WORD = re.compile(r"\w+", re.UNICODE)
_SPACE = re.compile(r"\s+")
_DIGITS = re.compile(r"\d")


def normalise(text: str) -> str:
    """Case, Unicode width forms, digits and whitespace folded: '12/8' and '03/4' look alike."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub(" ", _DIGITS.sub("0", folded)).strip()


def features(text: str) -> Counter[str]:
    """Word unigrams and bigrams, and character 2-4-grams (which carry typos, inflections and
    scripts without spaces such as Japanese and Chinese)."""
    norm = normalise(text)
    words = _WORD.findall(norm)
    counts: Counter[str] = Counter(f"w:{w}" for w in words)
    counts.update(f"b:{a} {b}" for a, b in zip(words, words[1:], strict=False))
    padded = f" {norm} "
    for n in (2, 3, 4):
        counts.update(f"c:{padded[i : i + n]}" for i in range(len(padded) - n + 1))
    return counts


def tfidf_row(counts: Counter[str], vocabulary: dict[str, int], idf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(column indices, values): sublinear tf times idf, L2-normalised; unknown features are dropped."""
    pairs = sorted(
        (vocabulary[f], (1.0 + math.log(c)) * float(idf[vocabulary[f]])) for f, c in counts.items() if f in vocabulary
    )
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    index = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
    values = np.fromiter((p[1] for p in pairs), dtype=np.float64, count=len(pairs))
    return index, values / np.linalg.norm(values)


@dataclass(frozen=True)
class ReplyModel:
    classes: tuple[str, ...]
    vocabulary: dict[str, int]
    idf: np.ndarray
    coef: np.ndarray  # (classes, features)
    intercept: np.ndarray
    version: str

    def probabilities(self, text: str) -> dict[str, float]:
        index, values = tfidf_row(features(text), self.vocabulary, self.idf)
        scores = self.coef[:, index].astype(np.float64) @ values + self.intercept
        exp = np.exp(scores - scores.max())
        return dict(zip(self.classes, (exp / exp.sum()).tolist(), strict=True))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        ordered = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        np.savez_compressed(
            buffer,
            classes=np.frombuffer("\n".join(self.classes).encode(), dtype=np.uint8),
            vocabulary=np.frombuffer("\n".join(ordered).encode(), dtype=np.uint8),
            idf=self.idf.astype(np.float32),
            coef=self.coef.astype(np.float32),
            intercept=self.intercept.astype(np.float32),
            version=np.frombuffer(self.version.encode(), dtype=np.uint8),
            feature_version=np.array([FEATURE_VERSION]),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReplyModel:
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            if int(saved["feature_version"][0]) != FEATURE_VERSION:
                raise ValueError("reply model was trained with other features; retrain it (make classifier-model)")
            words = saved["vocabulary"].tobytes().decode().split("\n")
            return cls(
                classes=tuple(saved["classes"].tobytes().decode().split("\n")),
                vocabulary={w: i for i, w in enumerate(words)},
                idf=saved["idf"].astype(np.float64),
                coef=saved["coef"],
                intercept=saved["intercept"].astype(np.float64),
                version=saved["version"].tobytes().decode(),
            )


MODEL_FILE = "reply_model.npz"


OBJECTION_MODEL_FILE = "objection_model.npz"


@cache
def packaged_model(name: str = MODEL_FILE) -> ReplyModel:
    """A model shipped in the layer (read once per execution environment)."""
    return ReplyModel.from_bytes(resources.files("flywheel.data").joinpath(name).read_bytes())
