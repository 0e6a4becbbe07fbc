"""Corpora: loaders (MADAR, parallel CSV/TSV, hub), the offline corpus, normalisation."""

from backend.data.corpus import SPLITS, Pair, ParallelCorpus
from backend.data.normalize import normalize_arabic
from backend.data.sources import Spec, filter_dialects, load_corpus, parse_spec

__all__ = [
    "SPLITS", "Pair", "ParallelCorpus", "Spec", "filter_dialects", "load_corpus", "normalize_arabic", "parse_spec",
]
