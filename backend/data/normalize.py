"""Arabic orthographic normalisation for evaluation.

Dialect text is written without a standard: the same word appears with or without
diacritics, with any of four alef shapes, with a final ى or ي, stretched with tatweel.
Scoring chrF++ or token overlap on raw text would count those spelling choices as
translation errors, so evaluation compares normalised text. This follows the usual
CAMeL-tools recipe (`dediac_ar`, `normalize_alef_ar`, `normalize_alef_maksura_ar`) in a
few lines instead of a heavy dependency; ta marbuta and hamza seats (ؤ ئ) are kept because
they carry meaning in both MSA and the dialects.
"""

from __future__ import annotations

import re

# Harakat, tanween, shadda, sukun (U+064B-U+0652), madda/hamza above and below and the
# other combining marks (U+0653-U+065F), superscript alef (U+0670), Quranic annotation
# marks (U+06D6-U+06ED), and tatweel (U+0640).
_MARKS = re.compile("[\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")
_ALEF = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ی": "ي"})
_SPACE = re.compile(r"\s+")


def normalize_arabic(text: str) -> str:
    """Strip diacritics and tatweel, unify alef and alef maqsura/yaa, collapse whitespace.

    Latin text passes through unchanged apart from whitespace, so the function is safe on
    English or mixed sentences.
    """
    text = _MARKS.sub("", str(text))
    text = text.translate(_ALEF)
    return _SPACE.sub(" ", text).strip()
