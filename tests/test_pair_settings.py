"""One definition of the settings a run pair may differ in (runs.PAIR_FREE_SETTINGS), and the
pages' handling of pairs whose probes measured other layers or at another cadence.

The bug: Compare paired runs only if they differed in lambda alone, while experiments share
one baseline across sweeps of `layers` and `probe_every`, so those runs never opened on
Compare or Overlap.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend import compare
from backend.runs import PAIR_FREE_SETTINGS, Run, RunConfig, create_run

REPO = Path(__file__).resolve().parent.parent
CFG = dict(source="offline", dialects=["CAI", "BEI"], base="tiny", steps=10)


def _run(root: Path, run_id: str, config: RunConfig, overlap: dict[int, list[str]] | None = None) -> Run:
    """A finished run folder as training leaves it (pairing and charts read only its files);
    `overlap` maps a step to the layers its probe logged."""
    run = create_run(config, root=root, run_id=run_id)
    run.write_state(state="finished")
    run.adapter_dir.mkdir()
    (run.adapter_dir / "adapter_config.json").write_text("{}")
    (run.adapter_dir / "adapter_model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
    lines = [json.dumps({"step": step, "overlap": {layer: 0.5 for layer in layers}})
             for step, layers in (overlap or {}).items()]
    run.metrics_path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return run


def test_pair_key_ignores_exactly_the_pair_free_settings():
    base = RunConfig(method="baseline", **CFG)
    changed = {"method": "decoupled", "name": "x", "lam": 3.0, "lam_warmup": 1, "layers": [1, 2],
               "probe_every": 50, "probe_rank": 2, "probe_steps": 3, "probe_batch": 4, "subspace": "pca"}
    assert set(changed) == PAIR_FREE_SETTINGS
    assert RunConfig(**{**CFG, **changed}).pair_key() == base.pair_key()
    assert RunConfig(**{**CFG, "dialects": ["BEI", "CAI"]}).pair_key() == base.pair_key()
    for name, value in {"seed": 1, "steps": 11, "lora_rank": 4, "source": "offline:seed=2", "base": "x"}.items():
        assert RunConfig(method="baseline", **{**CFG, name: value}).pair_key() != base.pair_key(), name


@pytest.mark.parametrize("setting", [{"probe_every": 50}, {"layers": [1, 2, 3, 4, 5, 6]}, {"subspace": "both"}])
def test_runs_differing_in_probe_settings_form_a_pair(tmp_path, setting):
    base = _run(tmp_path, "20260101-000001-baseline", RunConfig(method="baseline", **CFG))
    dec = _run(tmp_path, "20260101-000002-decoupled", RunConfig(method="decoupled", **CFG, **setting))
    assert [(p.baseline.id, p.decoupled.id) for p in compare.find_pairs(tmp_path)] == [(base.id, dec.id)]


def test_overlap_curves_keep_the_layers_both_runs_measured(tmp_path):
    base = _run(tmp_path, "20260101-000001-baseline", RunConfig(method="baseline", layers=[1, 2], **CFG),
                {2: ["1", "2"], 4: ["1", "2"]})
    dec = _run(tmp_path, "20260101-000002-decoupled",
               RunConfig(method="decoupled", layers=[2, 3, 10], probe_every=3, **CFG), {3: ["2", "3", "10"]})
    pair = compare.RunPair(base, dec)
    curves = compare.pair_curves(pair, "overlap")
    assert curves.measured == {"baseline": ["1", "2"], "decoupled": ["2", "3", "10"]}
    assert curves.shared == ["2"]
    assert {(r["run"], r["step"], r["layer"]) for r in curves.rows} == {
        ("baseline", 2, "2"), ("baseline", 4, "2"), ("decoupled", 3, "2")}
    assert "shown are the layers both measured: 2" in curves.note
    notes = " ".join(compare.measurement_notes(pair))
    assert "layers 1, 2" in notes and "layers 2, 3, 10" in notes and "every 10 steps" in notes


def test_runs_with_no_shared_layer_keep_all_curves_and_say_so(tmp_path):
    base = _run(tmp_path, "b", RunConfig(method="baseline", layers=[1], **CFG), {2: ["1"]})
    dec = _run(tmp_path, "d", RunConfig(method="decoupled", layers=[3], **CFG), {2: ["3"]})
    curves = compare.pair_curves(compare.RunPair(base, dec), "overlap")
    assert curves.shared == [] and len(curves.rows) == 2
    assert "do not compare layer by layer" in curves.note


def test_a_pair_probed_alike_has_no_notes(tmp_path):
    base = _run(tmp_path, "b", RunConfig(method="baseline", **CFG), {2: ["1", "2"]})
    dec = _run(tmp_path, "d", RunConfig(method="decoupled", lam=4.0, **CFG), {2: ["1", "2"]})
    pair = compare.RunPair(base, dec)
    assert compare.pair_curves(pair, "overlap").note is None
    assert compare.measurement_notes(pair) == []


# --- the pages, with two real tiny runs --------------------------------------------------------

@pytest.fixture(scope="module")
def probed_differently(tiny_base) -> compare.RunPair:
    """A real baseline probing layer 1 every 2 steps, and a decoupled run probing layers 1 and 2
    every 3 steps (the other settings alike)."""
    from backend.training import train

    common = dict(source="offline:size=400", dialects=["CAI", "BEI"], base=str(tiny_base), steps=6, batch_size=4,
                  max_length=48, probe_batch=16, save_every=1000, name="probed-differently")
    baseline = train(RunConfig(method="baseline", layers=[1], probe_every=2, **common))
    decoupled = train(RunConfig(method="decoupled", layers=[1, 2], probe_every=3, lam=2.0, **common))
    return compare.get_pair(f"{baseline.id}+{decoupled.id}")


def _open(page: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=180).run()
    at.switch_page(f"pages/{page}.py").run()
    return at


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.mark.slow
def test_overlap_page_charts_the_shared_layer_and_says_why(probed_differently):
    at = _open("overlap")
    at.selectbox[0].set_value(probed_differently.key).run()
    _clean(at)
    words = "\n".join(str(x.value) for x in [*at.caption, *at.info])
    assert "layers both measured: 1" in words
    assert "every 2 steps, the decoupled run every 3" in words
    energy = at.get("plotly_chart")[0].proto.spec
    assert "layer 1" in energy and "layer 2" not in energy


@pytest.mark.slow
def test_compare_page_offers_and_runs_the_pair(probed_differently):
    at = _open("compare")
    at.selectbox(key="compare_pair").set_value(probed_differently.key)
    at.text_area(key="compare_typed").input("أريد أن أشرب القهوة الآن")
    at.button(key="compare_run").click().run()
    _clean(at)
    assert "The baseline probed layers 1, the decoupled run layers 1, 2." in "\n".join(c.value for c in at.caption)
    assert "\n".join(m.value for m in at.markdown).count('dir="rtl"') >= 3
