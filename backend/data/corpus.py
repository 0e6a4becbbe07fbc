"""The one structure every loader returns: a list of aligned pairs.

A pair is a translation example for the project's task, `source (+ target variety) ->
sentence in the target variety`. Splits are normalised to `train`, `dev`, `test` so that
training, evaluation and the pages never care where a corpus came from.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Pair:
    id: str
    source: str
    source_variety: str
    target: str
    target_variety: str
    split: str


@dataclass
class ParallelCorpus:
    name: str
    pairs: list[Pair] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)

    def filter(self, split: str | None = None, targets: list[str] | tuple[str, ...] | None = None) -> ParallelCorpus:
        keep = [
            p for p in self.pairs
            if (split is None or p.split == split) and (targets is None or p.target_variety in targets)
        ]
        return ParallelCorpus(self.name, keep)

    def target_varieties(self) -> list[str]:
        return sorted({p.target_variety for p in self.pairs})

    def source_varieties(self) -> list[str]:
        return sorted({p.source_variety for p in self.pairs})

    def counts(self) -> dict[tuple[str, str], int]:
        """Pairs per (target variety, split)."""
        return dict(Counter((p.target_variety, p.split) for p in self.pairs))
