"""Hostile input, typed into every text field of the pages (AppTest, no model loaded): markdown,
HTML, backticks, math and paths never render as such, no message names a server folder, and
the Train form refuses what it can know is wrong before anything is queued.

Grows with every bug found: add the input that broke a page to PAYLOADS or as its own test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend import paths, safety
from backend.errors import LimitError, PathError

REPO = Path(__file__).resolve().parent.parent
PAYLOADS = [
    "`x` **bold** [link](http://127.0.0.1:9/l) ![img](http://127.0.0.1:9/i.png) <b>html</b> $x^2$",
    "``` ` `` \\` \\\\`",
    "csv:/etc/passwd **bold**",
    "madar:../../../etc/`x`",
    "<img src=x onerror=alert(1)>",
    "# heading\n- item\n> quote",
]
# What the payloads would render as if they reached markdown unescaped (a backslash before
# a character is markdown's escape, which shows it as text).
RAW = [re.compile(r"(?<!\\)" + re.escape(raw)) for raw in
       ("**bold**", "![img](", "[link](", "`x`", "<b>", "<img", "$x^2$", "# heading")]


@pytest.fixture()
def models(tmp_path, monkeypatch):
    monkeypatch.setenv("DD_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("DD_READ_ONLY", "")
    monkeypatch.delenv("DD_PASSWORD", raising=False)
    base = tmp_path / "base" / "four-layers"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 4}), encoding="utf-8")
    return tmp_path


def _rendered(at: AppTest) -> list[str]:
    """The values of every element that renders markdown."""
    elements = [*at.markdown, *at.caption, *at.error, *at.warning, *at.info, *at.success, *at.title, *at.subheader]
    return [str(e.value) for e in elements]


def _assert_safe(at: AppTest, models: Path) -> None:
    assert not at.exception, [e.value for e in at.exception]
    for text in _rendered(at):
        assert not [raw.pattern for raw in RAW if raw.search(text)], text
        assert str(models) not in text and str(REPO) not in text, text


def _page(name: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page(f"pages/{name}.py").run()
    return at


@pytest.mark.parametrize("payload", PAYLOADS)
def test_data_page_fields(models, payload):
    at = _page("data")
    at.text_input(key="data_spec").input(payload).run()
    _assert_safe(at, models)
    assert at.error
    at.text_input(key="data_spec").input("offline").run()
    at.text_input(key="data_query").input(payload).run()
    _assert_safe(at, models)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_train_page_fields(models, payload):
    at = _page("train")
    for key in ("train_source", "train_layers", "train_name"):
        at.text_input(key=key).input(payload).run()
        _assert_safe(at, models)
        at.text_input(key=key).input("offline" if key == "train_source" else "").run()
    at.selectbox(key="train_base").set_value("another (folder or hub id)…").run()
    at.text_input(key="train_base_other").input(payload).run()
    _assert_safe(at, models)
    assert at.error and at.button(key="train_launch").disabled


def test_train_refuses_a_missing_base_and_layers_it_does_not_have(models):
    at = _page("train")
    at.selectbox(key="train_base").set_value("four-layers")
    at.text_input(key="train_layers").input("2,9").run()
    assert any("has 4 layers" in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="train_launch").disabled
    at.text_input(key="train_layers").input("2,4").run()
    assert not any("layers" in e.value for e in at.error)
    assert any("layers 2, 4" in c.value for c in at.caption)  # the values that will be queued
    at.selectbox(key="train_base").set_value("another (folder or hub id)…").run()
    at.text_input(key="train_base_other").input("nowhere").run()
    assert any("no base model named" in e.value for e in at.error)
    with pytest.raises(PathError, match="no base model named"):
        safety.check_base_and_layers("nowhere", None)
    with pytest.raises(LimitError, match="has 4 layers"):
        safety.check_base_and_layers(str(paths.base_models_dir() / "four-layers"), [5])
    assert safety.check_base_and_layers("Qwen/Qwen2.5-0.5B", [40]) == "Qwen/Qwen2.5-0.5B"  # checked when loaded
