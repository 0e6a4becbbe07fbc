"""The linguists' workbench in Chromium (Playwright, /usr/bin/chromium; never `playwright install`):
word marks keep Arabic shaping and right-to-left order, Compare shows a picked source without
a stray "None", and a linguist goes from Welcome to 20 blind ratings to the rate on Results."""

from __future__ import annotations

import pytest
from browser_support import goto, no_traceback, settle

from backend import ratings

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_marked_words_keep_arabic_shaping_and_right_to_left_order(page, server):
    goto(page, server, "browse", "Browse outputs")
    no_traceback(page)
    block = page.locator(".dd-marked").first  # the source, MSA words marked against the target dialect
    block.wait_for()
    found = block.evaluate("""b => {
        const spans = [...b.querySelectorAll('span.dd-w')];
        const probe = document.createElement('span');
        b.appendChild(probe);
        const widths = spans.map(s => {  // the same word without any markup, in the same block
            probe.textContent = s.textContent;
            return [s.getBoundingClientRect().width, probe.getBoundingClientRect().width];
        });
        probe.remove();
        return {direction: getComputedStyle(b).direction, text: b.innerText, words: spans.map(s => s.textContent),
                marked: spans.filter(s => s.classList.contains('dd-msa')).length,
                lefts: spans.map(s => s.getBoundingClientRect().left),
                tops: spans.map(s => Math.round(s.getBoundingClientRect().top)), widths};
    }""")
    assert found["direction"] == "rtl" and found["marked"] >= 1
    assert found["words"] == found["text"].split()  # DOM order is the sentence's word order
    for marked, plain in found["widths"]:
        assert abs(marked - plain) < 0.5  # the mark does not change how the word is shaped
    same_line = [x for x, top in zip(found["lefts"], found["tops"]) if top == found["tops"][0]]
    assert same_line == sorted(same_line, reverse=True) and len(same_line) >= 2  # first word rightmost
    # shaped, not isolated letters: the word is narrower than its letters set apart with ZWNJ
    word = max(found["words"], key=len)
    joined, isolated = page.evaluate("""w => {
        const s = document.createElement('span'); s.style.fontFamily = getComputedStyle(
            document.querySelector('.dd-marked')).fontFamily; document.body.appendChild(s);
        s.textContent = w; const a = s.getBoundingClientRect().width;
        s.textContent = [...w].join('\\u200c'); const b = s.getBoundingClientRect().width; s.remove(); return [a, b];
    }""", word)
    assert joined < isolated


def test_compare_shows_a_picked_source_without_a_stray_none(page, server):
    goto(page, server, "compare", "Compare")
    page.get_by_text("Pick one from the test split").click()
    settle(page)
    page.locator(".dd-rtl").first.wait_for()
    main = page.inner_text('[data-testid="stMain"]')
    assert "None" not in main.split()
    no_traceback(page)


def test_a_linguist_rates_twenty_blind_pairs_then_sees_the_rate_on_results(page, server):
    goto(page, server, heading="Compare")  # models exist: the app opens on Compare
    page.get_by_role("link", name="Welcome").first.click()
    page.get_by_role("heading", name="Dialect decoupling").wait_for()
    settle(page)
    page.get_by_role("link", name="Rate their outputs blind").click()
    page.get_by_role("heading", name="Rate outputs blind").wait_for()
    settle(page)
    page.get_by_role("textbox", name="Your name or initials").fill("Browser linguist")
    page.get_by_role("button", name="Start rating").click()
    page.get_by_text("Rating as").wait_for()
    settle(page)
    for i in range(20):
        page.get_by_text(f"You have rated {i} of").wait_for()
        radios = page.locator('[data-testid="stRadio"]')
        radios.nth(0).get_by_text("A", exact=True).click()
        radios.nth(1).get_by_text("Tie / cannot tell" if i % 2 else "B", exact=True).click()
        page.get_by_role("button", name="Save and next").click()
        page.get_by_text(f"You have rated {i + 1} of").wait_for()
        settle(page)
    no_traceback(page)
    mine = [r for r in ratings.all_ratings() if r.rater == "Browser linguist"]
    assert len(mine) == 20
    page.get_by_role("link", name="See the preference rates on Results").click()
    page.get_by_role("heading", name="Blind ratings").wait_for()
    settle(page)
    no_traceback(page)
    assert page.get_by_text("Decoupled preferred as more dialectal").count() == 1
    assert page.get_by_text("sign test").count() >= 1
