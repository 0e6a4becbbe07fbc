"""Metric wrappers equal sacrebleu's own scores; the paired bootstrap behaves at the extremes."""

from __future__ import annotations

import random

import pytest
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from backend.evaluation import metrics

REFS = ["ذهب الولد إلى السوق في الصباح", "أريد أن أشرب القهوة الآن", "كان الطقس جميلا جدا اليوم",
        "لماذا لا تأتي معنا", "هذا الكتاب لي"]
HYPS = ["راح الولد على السوق الصبح", "عايز اشرب قهوة دلوقتي", "كان الطقس حلو قوي النهارده",
        "ليه ما تيجي معانا", "ده الكتاب بتاعي"]


def test_corpus_chrf_and_bleu_equal_sacrebleu_on_raw_text():
    chrf, sig = metrics.corpus_chrf(HYPS, REFS, normalized=False)
    assert chrf == pytest.approx(CHRF(word_order=2).corpus_score(HYPS, [REFS]).score)
    assert sig.startswith("nrefs:1|") and "nw:2" in sig
    bleu, bsig = metrics.corpus_bleu(HYPS, REFS, normalized=False)
    assert bleu == pytest.approx(BLEU(tokenize="intl").corpus_score(HYPS, [REFS]).score)
    assert "tok:intl" in bsig


def test_normalised_scores_are_sacrebleu_on_normalised_text():
    from backend.data.normalize import normalize_arabic

    hyps = ["أحمد ذهب إلى المدرسة", "هذه مدينة كبيرة"]
    refs = ["احمد ذهب الى المدرسه", "هذه مدينه كبيره"]
    chrf, sig = metrics.corpus_chrf(hyps, refs)
    expected = CHRF(word_order=2).corpus_score([normalize_arabic(h) for h in hyps],
                                              [[normalize_arabic(r) for r in refs]]).score
    assert chrf == pytest.approx(expected)
    assert sig.endswith("|norm:arabic")
    assert chrf > metrics.corpus_chrf(hyps, refs, normalized=False)[0]  # spelling variants forgiven


def test_corpus_scores_keys_and_identity():
    s = metrics.corpus_scores(REFS, REFS)
    assert s["n"] == 5 and s["chrf"] == pytest.approx(100.0) and s["bleu"] == pytest.approx(100.0)
    assert s["chrf_raw"] == pytest.approx(100.0)
    assert metrics.corpus_scores([], [])["chrf"] is None


def test_sentence_chrf_equals_sacrebleu():
    h, r = HYPS[1], REFS[1]
    assert metrics.sentence_chrf(h, r, normalized=False) == pytest.approx(
        CHRF(word_order=2).sentence_score(h, [r]).score)
    assert metrics.sentence_chrf(r, r) == pytest.approx(100.0)


def _systems(n=120, seed=0):
    rng = random.Random(seed)
    words = "ذهب الولد إلى السوق في الصباح وأكل الخبز مع أصدقائه ثم عاد البيت".split()
    refs = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(n)]

    def noisy(keep):
        return [" ".join(w if rng.random() < keep else rng.choice(words) for w in r.split()) for r in refs]

    return refs, noisy(0.5), noisy(0.9)


def test_bootstrap_identical_systems_p_is_one():
    refs, weak, _ = _systems()
    out = metrics.paired_bootstrap(weak, list(weak), refs)
    assert out["chrf"]["p_value"] > 0.5 and out["chrf"]["delta"] == 0
    avg = metrics.paired_bootstrap_average([(weak, weak, refs), (weak, weak, refs)])
    assert avg["p_value"] > 0.5


def test_bootstrap_clearly_better_system_is_significant():
    refs, weak, strong = _systems()
    out = metrics.paired_bootstrap(weak, strong, refs)
    assert out["chrf"]["delta"] > 10 and out["chrf"]["p_value"] < 0.01
    assert out["bleu"]["p_value"] < 0.01
    assert "bs:1000" in out["chrf"]["signature"]
    avg = metrics.paired_bootstrap_average([(weak, strong, refs), (weak, strong, refs)])
    assert avg["delta"] == pytest.approx(out["chrf"]["delta"]) and avg["p_value"] < 0.01


def test_stratified_bootstrap_with_one_stratum_reproduces_sacrebleu():
    refs, weak, strong = _systems(n=60, seed=3)
    # a small, uncertain difference, so the p-value is not pinned at its floor
    mixed = [s if i % 7 == 0 else w for i, (w, s) in enumerate(zip(weak, strong))]
    _, scores = PairedTest([("b", weak), ("s", mixed)], {"chrf": CHRF(word_order=2)}, [refs],
                           test_type="bs", n_samples=1000)()
    ours = metrics.paired_bootstrap_average([(weak, mixed, refs)], normalized=False)
    assert ours["p_value"] == pytest.approx(scores["chrF2++"][1].p_value)
    assert 0.001 < ours["p_value"] < 1.0


def test_macro_average():
    assert metrics.macro_average([10.0, 20.0, None]) == pytest.approx(15.0)
    assert metrics.macro_average([]) is None
