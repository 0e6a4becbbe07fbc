"""Arabic normalisation used by evaluation."""

from backend.data.normalize import normalize_arabic


def test_strips_diacritics_tatweel_and_superscript_alef():
    assert normalize_arabic("مَدْرَسَةٌ") == "مدرسة"
    assert normalize_arabic("شُكْرًا جَزِيلًا") == "شكرا جزيلا"
    assert normalize_arabic("كتـــاب") == "كتاب"
    assert normalize_arabic("هٰذا") == "هذا"
    assert normalize_arabic("مُحَمَّد") == "محمد"


def test_unifies_alef_and_yaa_variants():
    assert normalize_arabic("أحمد إلى آخر ٱلكتاب") == "احمد الي اخر الكتاب"
    assert normalize_arabic("مستشفى") == "مستشفي"
    assert normalize_arabic("علی") == "علي"  # Persian yeh


def test_decomposed_hamza_forms_normalise_like_composed_ones():
    decomposed = "\u0627\u0654\u0646\u0627"  # alef + combining hamza above, then "نا"
    assert normalize_arabic(decomposed) == normalize_arabic("أنا") == "انا"


def test_keeps_ta_marbuta_hamza_seats_and_latin():
    assert normalize_arabic("مسؤول قائمة") == "مسؤول قائمة"
    assert normalize_arabic("  Hello   world\t\n ") == "Hello world"


def test_collapses_whitespace_and_is_idempotent():
    text = "  أَيْنَ   الفُنْدُقُ\u00a0؟ "
    once = normalize_arabic(text)
    assert once == "اين الفندق ؟"
    assert normalize_arabic(once) == once
    assert normalize_arabic("") == ""
