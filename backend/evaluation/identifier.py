"""Dialect identification, to measure dialect fidelity and MSA leakage of generated text.

The model is the MADAR shared task's baseline kind (Salameh et al. 2018; Bouamor et al.
2019): multinomial naive Bayes over character n-grams, n = 1..5, taken inside words padded
with a space on each side (scikit-learn's `char_wb` analyser), written here in plain
Python and numpy. It is trained on the TRAIN side of the data only, on every Arabic
variety the corpus has (MSA included), so an output labelled as a neighbouring dialect
does not count as faithful.

Choices: Lidstone smoothing (`alpha`, fixed, never tuned on test data); uniform class
priors, because how often a variety occurs in a corpus's training side says nothing about
what a model outputs; n-grams never seen in training are ignored.

MSA is decided first, against all dialects pooled into one class (equal priors), then,
for a text that is not MSA, which dialect. With many dialects that each share some of
MSA's words, a flat 26-way vote splits "MSA-looking" text among the dialects that happen
to share its words: on the offline corpus the flat classifier labelled only 56% of MSA
references MSA (the two-level one 98%), which made MSA leakage unmeasurable. The price is
that dialect text identical to MSA is labelled MSA, which is what leakage should count. Its accuracy on held-out
references is reported beside every fidelity figure: fidelity cannot be trusted more than
the identifier is.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from backend import varieties
from backend.errors import UserError
from backend.runs import write_json_atomic

FORMAT = "dd-dialect-id/1"
MSA = "MSA"


def char_ngrams(text: str, n_min: int = 1, n_max: int = 5) -> list[str]:
    """Character n-grams inside space-padded words: `"من"` -> `" ", "م", "ن", " م", ...`."""
    grams: list[str] = []
    for word in str(text).split():
        w = f" {word} "
        for n in range(n_min, n_max + 1):
            if n > len(w):
                break
            grams.extend(w[i:i + n] for i in range(len(w) - n + 1))
    return grams


class DialectIdentifier:
    """Character n-gram multinomial naive Bayes over varieties (codes as labels)."""

    def __init__(self, n_min: int = 1, n_max: int = 5, alpha: float = 0.1) -> None:
        if not 1 <= n_min <= n_max:
            raise ValueError("need 1 <= n_min <= n_max")
        self.n_min, self.n_max, self.alpha = n_min, n_max, alpha
        self.labels: list[str] = []
        self.counts: dict[str, Counter] = {}
        self._vocab: dict[str, int] = {}
        self._log_prob: np.ndarray = np.zeros((0, 0))
        self._pooled: np.ndarray = np.zeros(0)
        self._msa: int | None = None

    # --- training --------------------------------------------------------------------
    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> DialectIdentifier:
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts for {len(labels)} labels")
        counts: dict[str, Counter] = {}
        for text, label in zip(texts, labels):
            counts.setdefault(str(label), Counter()).update(char_ngrams(text, self.n_min, self.n_max))
        if len(counts) < 2:
            raise UserError("the dialect identifier needs training text in at least two varieties")
        self.counts = counts
        self._build()
        return self

    def _build(self) -> None:
        self.labels = sorted(self.counts)
        vocab: dict[str, int] = {}
        for c in self.labels:
            for g in self.counts[c]:
                vocab.setdefault(g, len(vocab))
        matrix = np.zeros((len(vocab), len(self.labels)), dtype=np.float64)
        for j, c in enumerate(self.labels):
            for g, k in self.counts[c].items():
                matrix[vocab[g], j] = k
        totals = matrix.sum(0) + self.alpha * len(vocab)
        self._vocab = vocab
        self._log_prob = (np.log(matrix + self.alpha) - np.log(totals)).astype(np.float32)
        dialects = [j for j, c in enumerate(self.labels) if c != MSA]
        self._msa = self.labels.index(MSA) if MSA in self.labels and len(dialects) > 1 else None
        if self._msa is not None:
            pooled = matrix[:, dialects].sum(1)
            self._pooled = (np.log(pooled + self.alpha) - np.log(pooled.sum() + self.alpha * len(vocab))
                            ).astype(np.float32)

    # --- prediction ------------------------------------------------------------------
    def _scores(self, text: str) -> tuple[np.ndarray, float | None] | None:
        """(log-likelihood per label, log-likelihood under the pooled dialects or None), or
        None when the text has no n-gram seen in training."""
        if not self.labels:
            raise RuntimeError("the identifier is not trained")
        ids = [i for i in (self._vocab.get(g) for g in char_ngrams(text, self.n_min, self.n_max)) if i is not None]
        if not ids:
            return None
        pooled = float(self._pooled[ids].sum(dtype=np.float64)) if self._msa is not None else None
        return self._log_prob[ids].sum(0, dtype=np.float64), pooled

    def _posterior(self, scores: tuple[np.ndarray, float | None]) -> np.ndarray:
        s, pooled = scores
        if self._msa is None:
            p = np.exp(s - s.max())
            return p / p.sum()
        p_msa = 1.0 / (1.0 + np.exp(np.clip(pooled - s[self._msa], -700, 700)))
        d = s.copy()
        d[self._msa] = -np.inf
        p = np.exp(d - d.max())
        p *= (1.0 - p_msa) / p.sum()
        p[self._msa] = p_msa
        return p

    def _decide(self, scores: tuple[np.ndarray, float | None]) -> str:
        s, pooled = scores
        if self._msa is None:
            return self.labels[int(np.argmax(s))]
        if s[self._msa] > pooled:
            return MSA
        d = s.copy()
        d[self._msa] = -np.inf
        return self.labels[int(np.argmax(d))]

    def predict(self, texts: Iterable[str]) -> list[str | None]:
        """The variety per text (MSA or not first, then which dialect); None for a text with
        nothing to go on (an empty output), which then counts as neither faithful nor MSA."""
        out: list[str | None] = []
        for t in texts:
            s = self._scores(t)
            out.append(None if s is None else self._decide(s))
        return out

    def predict_proba(self, text: str) -> dict[str, float]:
        """Posterior over varieties, most likely first: P(MSA) from the MSA-or-dialect
        decision, the rest shared among the dialects."""
        s = self._scores(text)
        if s is None:
            return {c: 1.0 / len(self.labels) for c in self.labels}
        p = self._posterior(s)
        order = np.argsort(-p, kind="stable")
        return {self.labels[i]: float(p[i]) for i in order}

    def label(self, text: str) -> tuple[str | None, float | None]:
        """(the predicted variety, its posterior probability) for the Compare page;
        (None, None) when the text has nothing to go on."""
        s = self._scores(text)
        if s is None:
            return None, None
        label = self._decide(s)
        return label, float(self._posterior(s)[self.labels.index(label)])

    def accuracy(self, texts: Sequence[str], labels: Sequence[str]) -> float:
        if not texts:
            return float("nan")
        return float(np.mean([p == y for p, y in zip(self.predict(texts), labels)]))

    def report(self, texts: Sequence[str], labels: Sequence[str]) -> dict:
        """Accuracy overall and per true variety on held-out labelled text."""
        pred = self.predict(texts)
        per: dict[str, list[bool]] = {}
        for p, y in zip(pred, labels):
            per.setdefault(y, []).append(p == y)
        return {"accuracy": float(np.mean([p == y for p, y in zip(pred, labels)])) if pred else None,
                "n": len(pred), "per_variety": {k: float(np.mean(v)) for k, v in sorted(per.items())},
                "chance": 1.0 / len(self.labels) if self.labels else None}

    # --- persistence -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "n_min": self.n_min, "n_max": self.n_max, "alpha": self.alpha,
                "counts": {c: dict(self.counts[c]) for c in self.labels}}

    @classmethod
    def from_dict(cls, data: dict) -> DialectIdentifier:
        if data.get("format") != FORMAT:
            raise UserError(f"not a dialect identifier file (format {data.get('format')!r})")
        ident = cls(int(data["n_min"]), int(data["n_max"]), float(data["alpha"]))
        ident.counts = {c: Counter(v) for c, v in data["counts"].items()}
        ident._build()
        return ident

    def save(self, path: Path) -> Path:
        write_json_atomic(Path(path), self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> DialectIdentifier:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise UserError(f"cannot read the dialect identifier at {path}: {e}") from None


def fidelity(predicted: Sequence[str], target: str) -> dict:
    """Share of outputs labelled as the target variety, and share labelled MSA (leakage)."""
    n = len(predicted)
    if n == 0:
        return {"fidelity": None, "msa_leakage": None}
    return {"fidelity": sum(p == target for p in predicted) / n,
            "msa_leakage": sum(p == "MSA" for p in predicted) / n}


def labelled_texts(corpus, split: str = "train") -> tuple[list[str], list[str]]:
    """Every distinct Arabic sentence of a split with its variety: targets, and sources that
    are MSA or a dialect (English sources are left out)."""
    seen: set[tuple[str, str]] = set()
    texts, labels = [], []
    for p in corpus.pairs:
        if p.split != split:
            continue
        for text, code in ((p.target, p.target_variety), (p.source, p.source_variety)):
            try:
                v = varieties.get(code)
            except UserError:
                continue
            if v.kind == "source" or not str(text).strip() or (text, v.code) in seen:
                continue
            seen.add((text, v.code))
            texts.append(text)
            labels.append(v.code)
    return texts, labels


def train_identifier(corpus, split: str = "train", alpha: float = 0.1) -> DialectIdentifier:
    """An identifier trained on one split (the training split) of a ParallelCorpus."""
    texts, labels = labelled_texts(corpus, split)
    if not texts:
        raise UserError(f"{corpus.name} has no {split} text to train the dialect identifier on")
    return DialectIdentifier(alpha=alpha).fit(texts, labels)
