"""Word-level marks: which words of an output are MSA where the target dialect has its own
word, and which words differ between the baseline and the decoupled output.

MSA leakage is what decoupling is meant to reduce; a corpus-level leakage rate does not
show a linguist *which* words leaked. Two ways of knowing a word is an MSA form:

- the offline corpus (`LexiconMarker`): from its lexicon (backend/data/offline_lexicon.yaml,
  rendered by backend.data.offline). Every frame is rendered in MSA and in the target at the
  corpus's msa_overlap; a word is marked when it occurs in MSA renderings and in no
  rendering of the target (so words the dialect shares with MSA are never marked);
- any other corpus (`CorpusMarker`): a per-word identifier trained on the run's own
  training data: a word seen at least twice in MSA text and at least RATIO times as often
  there (add-one relative frequency) as in the target dialect's text. It is an estimate,
  and `how` says so on the page.

`to_html` turns an output into word spans (each word escaped) inside a dir="rtl" block; a
mark never splits a word, so Arabic letters keep joining and the order stays right to left.
"""

from __future__ import annotations

import difflib
import html
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from backend.data import load_corpus, offline
from backend.data.normalize import normalize_arabic
from backend.evaluation.identifier import labelled_texts

RATIO = 3.0  # how much more frequent in MSA than in the dialect a word must be (CorpusMarker)
MIN_MSA_COUNT = 2
_PUNCT = re.compile(r"[؟?.!,،:;\"'()«»]")


def keys(word: str) -> list[str]:
    """A displayed word as the lookup keys it holds: normalised, punctuation dropped."""
    return _PUNCT.sub(" ", normalize_arabic(word)).split()


def words(text: str) -> list[str]:
    """The words of an output as displayed (split on whitespace)."""
    return str(text).split()


@dataclass
class LexiconMarker:
    """MSA forms of the offline corpus's lexicon that the target renders differently."""

    msa_overlap: float
    how: str = ("MSA words from the offline corpus's lexicon: forms used in MSA that the target dialect "
                "(as this corpus renders it) never uses")

    def msa_words(self, text: str, target: str) -> list[bool]:
        marked = _lexicon_msa_only(target, round(float(self.msa_overlap), 6))
        return [any(k in marked for k in keys(w)) for w in words(text)]


@lru_cache(maxsize=32)
def _lexicon_msa_only(target: str, msa_overlap: float) -> frozenset[str]:
    if target in ("MSA", "ENG") or target not in offline.DIALECTS:
        return frozenset()
    lex = offline.lexicon()
    msa: set[str] = set()
    dialect: set[str] = set()
    for tid in lex.templates:
        for frame in lex.frames(tid):
            msa.update(keys(lex.render(frame, "MSA")))
            dialect.update(keys(offline._dialect_sentence(lex, frame, target, msa_overlap)))
    return frozenset(msa - dialect)


@dataclass
class CorpusMarker:
    """A per-word identifier from a corpus's training text: MSA-typical words."""

    counts: dict[str, Counter] = field(default_factory=dict)  # variety -> word counts
    how: str = (f"MSA words estimated by a per-word identifier trained on this run's training data: seen at "
                f"least {MIN_MSA_COUNT} times in MSA text and at least {RATIO:g}× as often there as in the "
                "target dialect's (an estimate, not a lexicon)")

    @classmethod
    def fit(cls, texts: list[str], labels: list[str]) -> CorpusMarker:
        counts: dict[str, Counter] = {}
        for text, label in zip(texts, labels):
            counts.setdefault(label, Counter()).update(k for w in words(text) for k in keys(w))
        return cls(counts)

    def msa_words(self, text: str, target: str) -> list[bool]:
        msa, own = self.counts.get("MSA"), self.counts.get(target)
        if target == "MSA" or not msa or not own:
            return [False] * len(words(text))
        vocab = len(set(msa) | set(own))
        n_msa, n_own = sum(msa.values()), sum(own.values())

        def is_msa(k: str) -> bool:
            c = msa.get(k, 0)
            return c >= MIN_MSA_COUNT and (c + 1) / (n_msa + vocab) >= RATIO * (own.get(k, 0) + 1) / (n_own + vocab)

        return [any(is_msa(k) for k in keys(w)) for w in words(text)]


Marker = LexiconMarker | CorpusMarker

_OVERLAP = re.compile(r"msa_overlap=([0-9.]+)")


def marker_for_corpus(corpus) -> Marker:
    """The lexicon for the offline corpus (its name says its msa_overlap), else a per-word
    identifier fitted on the corpus's training split."""
    name = str(getattr(corpus, "name", ""))
    m = _OVERLAP.search(name)
    if name.startswith("offline:") and m:
        return LexiconMarker(float(m.group(1)))
    return CorpusMarker.fit(*labelled_texts(corpus, "train"))


def marker_for(source: str) -> Marker:
    """`marker_for_corpus` of a corpus spec (a run config's `source`)."""
    return marker_for_corpus(load_corpus(source))


def changed(a: str, b: str) -> tuple[list[bool], list[bool]]:
    """Per word of `a` and of `b`: True where it is not part of the longest common word
    sequence of the two (compared after normalisation)."""
    wa, wb = words(a), words(b)
    ka, kb = [" ".join(keys(w)) for w in wa], [" ".join(keys(w)) for w in wb]
    in_a, in_b = [True] * len(wa), [True] * len(wb)
    for block in difflib.SequenceMatcher(None, ka, kb, autojunk=False).get_matching_blocks():
        for i in range(block.size):
            in_a[block.a + i] = False
            in_b[block.b + i] = False
    return in_a, in_b


def to_html(text: str, msa: list[bool] | None = None, diff: list[bool] | None = None, css_class: str = "") -> str:
    """`text` as one span per word (escaped) in a right-to-left block; `msa` words get the
    class dd-msa, `diff` words dd-diff. Only whole words are wrapped, so shaping survives."""
    ws = words(text)
    msa = msa or [False] * len(ws)
    diff = diff or [False] * len(ws)
    spans = []
    for w, is_msa, is_diff in zip(ws, msa, diff):
        classes = "dd-w" + (" dd-msa" if is_msa else "") + (" dd-diff" if is_diff else "")
        title = "; ".join(t for t, on in (("MSA form", is_msa), ("differs from the other adapter", is_diff)) if on)
        spans.append(f'<span class="{classes}"' + (f' title="{title}"' if title else "") + f">{html.escape(w)}</span>")
    return f'<div class="dd-rtl dd-marked {css_class}" dir="rtl" lang="ar">{" ".join(spans)}</div>'


def mark_outputs(texts: dict[str, str], target: str, marker: Marker | None,
                 css_class: str = "dd-card") -> dict[str, str]:
    """system -> HTML of its output: MSA words marked (when there is a marker) and, for the
    baseline and decoupled outputs, the words where the two differ."""
    diffs: dict[str, list[bool]] = {}
    if "baseline" in texts and "decoupled" in texts:
        diffs["baseline"], diffs["decoupled"] = changed(texts["baseline"], texts["decoupled"])
    return {s: to_html(t, marker.msa_words(t, target) if marker else None, diffs.get(s), css_class)
            for s, t in texts.items()}
