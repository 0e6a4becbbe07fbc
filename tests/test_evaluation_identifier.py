"""The dialect identifier: n-gram features, persistence, and accuracy on held-out offline text."""

from __future__ import annotations

import pytest

from backend.errors import UserError
from backend.evaluation.identifier import (
    DialectIdentifier,
    char_ngrams,
    fidelity,
    labelled_texts,
    train_identifier,
)


def test_char_ngrams_pad_words():
    grams = char_ngrams("من هو", 1, 2)
    assert " م" in grams and "ن " in grams and "هو" in grams
    assert "ن ه" not in char_ngrams("من هو", 1, 3)  # n-grams never cross words


def test_fit_predict_proba_and_roundtrip(tmp_path):
    texts = ["عايز اروح دلوقتي", "ده كويس قوي", "بدي روح هلق", "هيدا كتير منيح", "أريد أن أذهب الآن", "هذا جيد جدا"]
    labels = ["CAI", "CAI", "BEI", "BEI", "MSA", "MSA"]
    ident = DialectIdentifier().fit(texts, labels)
    assert ident.predict(["عايز ده دلوقتي", "بدي هيدا هلق", "أريد هذا الآن"]) == ["CAI", "BEI", "MSA"]
    proba = ident.predict_proba("بدي روح")
    assert next(iter(proba)) == "BEI" and sum(proba.values()) == pytest.approx(1.0)
    assert ident.label("بدي روح")[0] == "BEI"
    path = ident.save(tmp_path / "id.json")
    again = DialectIdentifier.load(path)
    assert again.predict_proba("بدي روح") == pytest.approx(proba)
    assert fidelity(["CAI", "MSA", "CAI", "BEI"], "CAI") == {"fidelity": 0.5, "msa_leakage": 0.25}


def test_needs_two_varieties():
    with pytest.raises(UserError):
        DialectIdentifier().fit(["a", "b"], ["CAI", "CAI"])


def test_identifier_beats_chance_on_offline_corpus():
    from backend.data import load_corpus

    corpus = load_corpus("offline")
    ident = train_identifier(corpus)
    texts, labels = labelled_texts(corpus, "test")
    assert set(labels) >= {"MSA", "CAI", "BEI"} and "ENG" not in labels
    report = ident.report(texts, labels)
    chance = 1.0 / len(ident.labels)
    assert report["accuracy"] > max(0.6, 4 * chance), report


def test_text_without_known_ngrams_is_unlabelled():
    ident = DialectIdentifier().fit(["عايز", "بدي"], ["CAI", "BEI"])
    assert ident.predict(["", "   "]) == [None, None]
    assert ident.label("") == (None, None)
    assert fidelity([None, "CAI"], "CAI") == {"fidelity": 0.5, "msa_leakage": 0.0}
