"""Generation quality: corpus chrF++ and BLEU, their signatures, and paired significance.

Every number comes from sacrebleu 2.6 itself (`CHRF(word_order=2)` for chrF++,
`BLEU(tokenize="intl")` for BLEU), so a score here equals sacrebleu's score on the same
strings, and its signature says how it was made.

**Normalisation.** The headline scores are computed on text passed through
`backend.data.normalize.normalize_arabic` (hypotheses and references alike): dialectal
Arabic has no standard orthography, and spelling variants of one word (alef with or
without hamza, final yaa / alef maqsura, diacritics, tatweel) would otherwise count as
errors that say nothing about dialect generation. The raw-text scores
are kept beside them (`chrf_raw`, `bleu_raw`) so nothing is hidden; signatures of
normalised scores end in `|norm:arabic`.

**BLEU tokenisation.** `intl` rather than `13a`: it splits Unicode punctuation and symbols,
so Arabic punctuation (، ؟ ؛) is not glued to words.

**Significance.** Per variety, sacrebleu's own paired bootstrap resampling
(`sacrebleu.significance.PairedTest`, `test_type="bs"`, 1000 resamples, sacrebleu's
default seed 12345). Two documented departures, both for edge cases sacrebleu gets wrong
or does not cover:

- Identical outputs: sacrebleu's test compares resampled differences with the real one
  using a strict `>`, so two identical systems (every difference exactly 0) get
  p = 1/1001, "significant". Identical hypotheses are reported with p = 1.0.
- The average over dialects is a macro average of per-dialect corpus scores; its p-value
  comes from a *stratified* paired bootstrap (each dialect resampled within itself, the
  same indices for both systems) built from sacrebleu's sufficient statistics and its
  p-value formula. With a single stratum it reproduces `PairedTest` exactly (tested).
  Over several seeds the same function takes one stratum per seed (a variety's p) or per
  (dialect, seed) (the average's p).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest, _compute_p_value, estimate_ci

from backend.data.normalize import normalize_arabic

NORM_TAG = "arabic"
N_BOOTSTRAP = 1000
CHRF_NAME = "chrF2++"
BLEU_NAME = "BLEU"


def chrf_metric() -> CHRF:
    return CHRF(word_order=2)


def bleu_metric() -> BLEU:
    return BLEU(tokenize="intl")


def normalize(texts: Sequence[str]) -> list[str]:
    return [normalize_arabic(t) for t in texts]


def _prepare(hyps: Sequence[str], refs: Sequence[str], normalized: bool) -> tuple[list[str], list[str]]:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    hyps, refs = [str(h) for h in hyps], [str(r) for r in refs]
    return (normalize(hyps), normalize(refs)) if normalized else (hyps, refs)


def _signature(sig: object, normalized: bool) -> str:
    """sacrebleu's signature (a metric's or a paired test's), plus our normalisation tag."""
    return f"{sig}|norm:{NORM_TAG}" if normalized else str(sig)


def corpus_chrf(hyps: Sequence[str], refs: Sequence[str], normalized: bool = True) -> tuple[float, str]:
    """Corpus chrF++ and its signature."""
    h, r = _prepare(hyps, refs, normalized)
    metric = chrf_metric()
    return float(metric.corpus_score(h, [r]).score), _signature(metric.get_signature(), normalized)


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str], normalized: bool = True) -> tuple[float, str]:
    """Corpus BLEU and its signature."""
    h, r = _prepare(hyps, refs, normalized)
    metric = bleu_metric()
    return float(metric.corpus_score(h, [r]).score), _signature(metric.get_signature(), normalized)


def corpus_scores(hyps: Sequence[str], refs: Sequence[str]) -> dict:
    """chrF++ and BLEU on normalised text (the headline) and on raw text, with signatures."""
    if not hyps:
        return {"n": 0, "chrf": None, "bleu": None, "chrf_raw": None, "bleu_raw": None,
                "chrf_signature": None, "bleu_signature": None}
    chrf, chrf_sig = corpus_chrf(hyps, refs)
    bleu, bleu_sig = corpus_bleu(hyps, refs)
    return {
        "n": len(hyps), "chrf": chrf, "bleu": bleu,
        "chrf_raw": corpus_chrf(hyps, refs, normalized=False)[0],
        "bleu_raw": corpus_bleu(hyps, refs, normalized=False)[0],
        "chrf_signature": chrf_sig, "bleu_signature": bleu_sig,
    }


def sentence_chrf(hyp: str, ref: str, normalized: bool = True) -> float:
    """Sentence-level chrF++ (for the Compare page; corpus scores are what tables report)."""
    (h,), (r,) = _prepare([hyp], [ref], normalized)
    return float(chrf_metric().sentence_score(h, [r]).score)


def _seed() -> int | None:
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    return None if seed.lower() == "none" else int(seed)


def paired_bootstrap(baseline: Sequence[str], system: Sequence[str], refs: Sequence[str],
                     n_samples: int = N_BOOTSTRAP, normalized: bool = True) -> dict:
    """sacrebleu's paired bootstrap test of `system` against `baseline` on one test set.

    Returns, for "chrf" and "bleu": baseline and system scores, their bootstrap means and 95%
    half-widths, the delta, the p-value, and the test's signature.
    """
    if not (len(baseline) == len(system) == len(refs)):
        raise ValueError("baseline, system and references must have the same length")
    if not refs:
        return {}
    b, r = _prepare(baseline, refs, normalized)
    s, _ = _prepare(system, refs, normalized)
    test = PairedTest([("baseline", b), ("system", s)], {"chrf": chrf_metric(), "bleu": bleu_metric()},
                      [r], test_type="bs", n_samples=n_samples)
    signatures, scores = test()
    out = {}
    for key, name in (("chrf", CHRF_NAME), ("bleu", BLEU_NAME)):
        base, sys_ = scores[name]
        p = 1.0 if b == s else float(sys_.p_value)
        out[key] = {
            "baseline": float(base.score), "system": float(sys_.score),
            "delta": float(sys_.score - base.score), "p_value": p,
            "baseline_mean": float(base.mean), "baseline_ci": float(base.ci),
            "system_mean": float(sys_.mean), "system_ci": float(sys_.ci),
            "signature": _signature(signatures[name], normalized),
        }
    return out


def paired_bootstrap_average(strata: Sequence[tuple[Sequence[str], Sequence[str], Sequence[str]]],
                             metric: str = "chrf", n_samples: int = N_BOOTSTRAP,
                             normalized: bool = True) -> dict:
    """Stratified paired bootstrap for the macro average over test sets (dialects).

    `strata` holds (baseline, system, references) per dialect, or per (dialect, seed) when
    each seed trained its own pair of systems (`compare_seeds`: a seed's baseline and
    system share that seed's indices; seeds are resampled independently). Each resample
    draws, within every stratum, one index vector shared by both systems (so pairs stay
    paired), computes each stratum's corpus score from sacrebleu's sufficient statistics,
    and averages over strata. The p-value follows sacrebleu's paired bootstrap exactly.
    """
    strata = [s for s in strata if len(s[2])]
    if not strata:
        return {}
    make = chrf_metric if metric == "chrf" else bleu_metric
    rng = np.random.default_rng(_seed())
    real_b, real_s, samples_b, samples_s = [], [], [], []
    identical = True
    for baseline, system, refs in strata:
        b, r = _prepare(baseline, refs, normalized)
        s, _ = _prepare(system, refs, normalized)
        identical &= b == s
        m = make()
        stats_b = np.array(m._extract_corpus_statistics(b, [r]), dtype="float32")
        stats_s = np.array(m._extract_corpus_statistics(s, [r]), dtype="float32")
        real_b.append(m._compute_score_from_stats(list(stats_b.sum(0))).score)
        real_s.append(m._compute_score_from_stats(list(stats_s.sum(0))).score)
        idx = rng.choice(len(r), size=(n_samples, len(r)), replace=True)
        samples_b.append([m._compute_score_from_stats(x.sum(0)).score for x in stats_b[idx]])
        samples_s.append([m._compute_score_from_stats(x.sum(0)).score for x in stats_s[idx]])
    avg_b, avg_s = float(np.mean(real_b)), float(np.mean(real_s))
    boot_b, boot_s = np.mean(samples_b, axis=0), np.mean(samples_s, axis=0)
    diffs = np.abs(boot_s - boot_b)
    p = 1.0 if identical else float(_compute_p_value(diffs - diffs.mean(), abs(avg_s - avg_b)))
    mean_b, ci_b = estimate_ci(boot_b)
    mean_s, ci_s = estimate_ci(boot_s)
    return {"baseline": avg_b, "system": avg_s, "delta": avg_s - avg_b, "p_value": p,
            "baseline_mean": float(mean_b), "baseline_ci": float(ci_b),
            "system_mean": float(mean_s), "system_ci": float(ci_s),
            "strata": len(strata), "n_samples": n_samples, "seed": _seed()}


def macro_average(values: Sequence[float | None]) -> float | None:
    """Unweighted mean over varieties (every dialect counts once, as in the paper's tables)."""
    vals = [float(v) for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(vals)) if vals else None
