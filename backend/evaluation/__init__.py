"""Evaluation: how good, how dialectal, and how entangled a run's outputs and states are.

    metrics.py       corpus chrF++ / BLEU (sacrebleu), signatures, paired bootstrap, sentence chrF++
    identifier.py    character n-gram naive Bayes dialect identifier (fidelity, MSA leakage)
    entanglement.py  per-layer MSA-subspace energy, probe accuracy / code length, principal
                     angles, CKA, and a shared 2-D projection
    evaluate.py      evaluate_run (eval.json + outputs.jsonl) and compare_runs (the table)

Submodules are imported where used, so `import backend.evaluation` stays light.
"""

import importlib

_LAZY = {
    "evaluate_run": "backend.evaluation.evaluate",
    "compare_runs": "backend.evaluation.evaluate",
    "identifier_for": "backend.evaluation.evaluate",
    "DialectIdentifier": "backend.evaluation.identifier",
    "sentence_chrf": "backend.evaluation.metrics",
    "corpus_scores": "backend.evaluation.metrics",
    "paired_bootstrap": "backend.evaluation.metrics",
    "entanglement_report": "backend.evaluation.entanglement",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
