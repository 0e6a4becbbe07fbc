"""Corpora: loaders (MADAR, parallel CSV/TSV, hub), the offline corpus, normalisation."""

from backend.data.corpus import SPLITS, Pair, ParallelCorpus

__all__ = ["SPLITS", "Pair", "ParallelCorpus"]
