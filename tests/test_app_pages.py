"""Every page of the Streamlit app through streamlit.testing.v1.AppTest: it renders without an
exception, its main controls work, and bad input shows a short message instead of a traceback.

The pages run against real tiny models: the tiny demo (base + baseline + decoupled, evaluated
as an experiment) built once under the session's DD_MODELS_DIR.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from apptest_support import assert_clean, compare_picking, new_app, open_page
from streamlit.testing.v1 import AppTest

from backend import demo, jobs, paths
from backend.runs import Run, list_runs, write_json_atomic

TINY = demo.DemoOptions.tiny()
PAGES = ("home", "compare", "browse", "rate", "train", "overlap", "results", "data")


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info] \
        + [w.value for w in at.warning] + [e.value for e in at.error] + [s.value for s in at.success]
    return "\n".join(str(p) for p in parts)


# --- a fresh install -----------------------------------------------------------------------

def test_fresh_install_opens_on_welcome_with_one_build_button(empty_models):
    at = open_page()
    assert at.title[0].value == "Dialect decoupling"
    assert [b.label for b in at.button] == ["Build the demo models"]
    assert "takes about" in _texts(at)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_runs(empty_models, page):
    at = open_page(page)
    if page in ("compare", "overlap", "results"):
        assert at.info, f"{page} should say what to do when there is nothing to show"


def test_a_running_build_shows_its_progress(empty_models):
    with demo._build_lock():  # this process plays the build process
        write_json_atomic(demo.status_path(), {
            "state": "running", "pid": 1, "stage": "baseline", "stages": list(demo.STAGES), "fraction": 0.4,
            "message": "training the baseline adapter", "step": 30, "steps": 300, "updated": time.time()})
        at = open_page()
        assert at.status and at.progress
        assert at.progress[0].value == pytest.approx(40, abs=1)  # percent
        assert "step 30 of 300" in at.progress[0].proto.text
        assert "Cancel the build" in [b.label for b in at.button]
        assert "Build the demo models" not in [b.label for b in at.button]
    at = new_app().run()  # the "build" ended without writing a final status
    assert "stopped" in _texts(at) and [b.label for b in at.button] == ["Build the demo models"]


def test_read_only_mode_hides_train_and_the_build_button(empty_models, monkeypatch):
    monkeypatch.setenv("DD_READ_ONLY", "1")
    at = open_page()
    assert not at.button and "read-only" in _texts(at) and "**Train**" not in _texts(at)
    with pytest.raises(ValueError):
        at.switch_page("pages/train.py")


def test_a_demo_password_gates_every_page(empty_models, monkeypatch):
    monkeypatch.setenv("DD_PASSWORD", "sesame")
    at = open_page()
    assert [t.label for t in at.text_input] == ["Password"] and not at.button
    at.run()  # AppTest drops a value typed into app.py's own widget right after the run that chose the page
    at.text_input(key="dd_password").input("wrong").run()
    assert "Wrong password." in [e.value for e in at.error]
    assert "Build the demo models" not in [b.label for b in at.button]
    at.text_input(key="dd_password").input("sesame").run()
    assert_clean(at)
    assert [b.label for b in at.button] == ["Build the demo models"] and not at.text_input


# --- compare -------------------------------------------------------------------------------

@pytest.mark.slow
def test_compare_is_the_start_page_and_compares_three_systems(demo_pair):
    assert open_page().title[0].value == "Compare"  # "/" sends a new visitor to Compare once models exist
    at = open_page("compare")  # AppTest keeps its own page across reruns: name it, as the browser's URL does
    at.selectbox(key="compare_pair").set_value(demo_pair.key)
    at.text_area(key="compare_typed").input("أريد أن أشرب القهوة الآن")
    at.text_input(key="compare_reference").input("عايز اشرب قهوة دلوقتي")
    at.button(key="compare_run").click().run()
    assert_clean(at)
    assert not at.error
    html = "\n".join(m.value for m in at.markdown)
    assert html.count('dir="rtl"') >= 3
    assert "Base model (no adapter)" in html and "Decoupled adapter" in html
    captions = _texts(at)
    assert captions.count("chrF++") >= 3 and "one batched call" in captions
    # the result stays on screen across reruns (session state), as after a widget change
    at.run()
    assert "one batched call" in _texts(at)


@pytest.mark.slow
def test_compare_from_the_test_split_and_an_untrained_target(demo_pair):
    at = compare_picking(demo_pair.key)
    at.button(key="compare_run").click().run()
    assert not at.error and "chrF++" in _texts(at)
    at.selectbox(key=f"compare_target_{demo_pair.key}").set_value("RIY").run()
    assert any("not trained on" in w.value for w in at.warning)


@pytest.mark.slow
def test_compare_bad_input_shows_a_message(demo_pair):
    at = open_page("compare")
    at.selectbox(key="compare_pair").set_value(demo_pair.key)
    at.button(key="compare_run").click().run()
    assert len(at.error) == 1 and "empty" in at.error[0].value
    at.text_area(key="compare_typed").input("كلمة " * 200)
    at.button(key="compare_run").click().run()
    assert_clean(at)
    assert at.error and "over the cap" in at.error[0].value


@pytest.mark.slow
def test_compare_a_pair_whose_adapter_is_corrupt_shows_a_message(demo_pair):
    copy = Run(paths.runs_dir() / f"{demo_pair.decoupled.id}-corrupt")  # pairs with the same baseline
    shutil.copytree(demo_pair.decoupled.dir, copy.dir)
    (copy.adapter_dir / "adapter_model.safetensors").write_bytes(b"garbage")
    weights = copy.adapter_dir / "adapter_model.safetensors"
    try:
        at = open_page("compare")  # a file that is not safetensors at all: listed as damaged, never offered
        assert not [o for o in at.selectbox(key="compare_pair").options if copy.id in o]  # labels end in the id
        assert "not a safetensors file" in "\n".join(m.value for m in at.markdown)
        weights.write_bytes((2).to_bytes(8, "little") + b"{}")  # well-formed, but holds no weights
        at = open_page("compare")
        at.selectbox(key="compare_pair").set_value(f"{demo_pair.baseline.id}+{copy.id}")
        at.text_area(key="compare_typed").input("أريد أن أشرب القهوة")
        at.button(key="compare_run").click().run()
        assert_clean(at)
        assert at.error and "could not be loaded" in at.error[0].value
        # the good pair still works in the same session
        at.selectbox(key="compare_pair").set_value(demo_pair.key)
        at.button(key="compare_run").click().run()
        assert not at.error and "one batched call" in _texts(at)
    finally:
        shutil.rmtree(copy.dir, ignore_errors=True)


# --- overlap, results, data ------------------------------------------------------------------

@pytest.mark.slow
def test_overlap_charts_training_and_entanglement(demo_pair):
    at = open_page("overlap")
    at.selectbox[0].set_value(demo_pair.key).run()
    assert_clean(at)
    charts = at.get("plotly_chart")
    assert len(charts) >= 5  # energy, probe accuracy, code length, energy/CKA bars, angles, projection
    assert "No entanglement measurements" not in _texts(at)


@pytest.mark.slow
def test_results_table_download_and_a_corrupt_experiment(demo_pair):
    bad = paths.experiments_dir() / "zz-corrupt"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "results.json").write_text("{ not json", encoding="utf-8")
    try:
        at = open_page("results")
        at.selectbox[0].set_value("zz-corrupt").run()
        assert_clean(at)
        assert at.error and "unreadable" in at.error[0].value
        at.selectbox[0].set_value(TINY.name).run()
        assert_clean(at)
        assert not at.error
        assert at.get("download_button") and at.dataframe
        assert len(at.get("plotly_chart")) >= 1
        table = at.dataframe[0].value
        assert {"CAI", "BEI", "average"} <= set(table["variety"])
    finally:
        shutil.rmtree(bad)


def _results_row(code: str, name: str, base: float, dec: float, seeds: list[int] | None = None) -> dict:
    row = {"variety": code, "name": name, "n": 6, "baseline_chrf": base, "decoupled_chrf": dec, "delta": dec - base,
           "p_value": 0.04, "baseline_bleu": 1.0, "decoupled_bleu": 1.5, "fidelity_baseline": 0.5,
           "fidelity_decoupled": 0.6, "msa_leakage_baseline": 0.2, "msa_leakage_decoupled": 0.1}
    if seeds:
        deltas = [dec - base - 0.3, dec - base + 0.4, dec - base - 0.1][: len(seeds)]
        row.update(seeds=seeds, baseline_chrf_sd=0.4, decoupled_chrf_sd=0.3, delta_sd=0.35, deltas=deltas,
                   baseline_chrf_seeds=[base] * len(seeds), decoupled_chrf_seeds=[dec] * len(seeds),
                   p_value_method="paired bootstrap stratified over seeds")
    return row


def _write_results(experiment_id: str, seeds: list[int] | None) -> None:
    rows = [_results_row("CAI", "Cairo", 16.0, 16.8, seeds), _results_row("BEI", "Beirut", 17.0, 16.5, seeds)]
    average = {**_results_row("AVG", "Average over dialects", 16.5, 16.65, seeds),
               "p_value_method": "stratified"}
    table = {"rows": rows, "average": average, "msa": _results_row("MSA", "Modern Standard Arabic", 20.0, 19.0, seeds),
             "runs": {"baseline": "b0", "decoupled": "d0"}}
    data = {"id": experiment_id, "name": experiment_id, "created": "2026-01-01T00:00:00", "split": "test",
            "identifier_accuracy": 0.74, "signatures": {"chrf": "nrefs:1|nw:2", "bleu": "tok:intl"},
            "config": {"name": experiment_id}, "hardware": {"device": "cpu"}, "entanglement": {},
            **table, "sweep_param": "lam",
            "sweep": [{**table, "setting": {"lam": lam}, "label": f"lam={lam}", "source": "offline"}
                      for lam in (1.0, 3.0)]}
    if seeds:  # what the code that knows seeds writes; older files have none of these keys
        data.update(seeds=seeds, runs_by_seed=[{"seed": s, "baseline": f"b{s}", "decoupled": f"d{s}"} for s in seeds],
                    per_seed=[{"seed": s, **table} for s in seeds])
        for s in data["sweep"]:
            s["seeds"] = seeds
    write_json_atomic(paths.experiments_dir() / experiment_id / "results.json", data)


def test_results_page_over_several_seeds_and_an_old_single_seed_file(empty_models):
    _write_results("three-seeds", [0, 1, 2])
    _write_results("old-single", None)
    at = open_page("results")
    at.selectbox[0].set_value("three-seeds").run()
    assert_clean(at)
    assert not at.error
    table = at.dataframe[0].value
    assert {"baseline_chrf_sd", "decoupled_chrf_sd", "deltas"} <= set(table.columns)
    cai = table[table["variety"] == "CAI"].iloc[0]
    assert cai["baseline_chrf_sd"] == pytest.approx(0.4) and cai["deltas"] == "+0.50, +1.20, +0.70"
    assert {"CAI", "BEI", "average", "MSA"} <= set(table["variety"])
    assert "Seeds 0, 1, 2" in _texts(at)
    assert any("±" in str(m.value) for m in at.metric)
    sweep = at.dataframe[1].value
    assert list(sweep["setting"]) == ["lam=1.0", "lam=3.0"] and "deltas" in sweep.columns

    at.selectbox[0].set_value("old-single").run()
    assert_clean(at)
    assert not at.error
    table = at.dataframe[0].value
    assert "deltas" not in table.columns and "baseline_chrf_sd" not in table.columns
    assert {"CAI", "BEI", "average", "MSA"} <= set(table["variety"])
    assert "Seeds" not in _texts(at) and not any("±" in str(m.value) for m in at.metric)
    assert "deltas" not in at.dataframe[1].value.columns


@pytest.mark.slow
def test_data_page_browses_and_rejects_bad_paths():
    at = open_page("data")
    counts = at.dataframe[0].value
    assert {"train", "dev", "test", "total"} <= set(counts.columns) and counts["total"].sum() > 0
    assert 'dir="rtl"' in "\n".join(m.value for m in at.markdown)
    at.text_input(key="data_spec").input("csv:/etc/passwd").run()
    assert_clean(at)
    assert at.error
    at.text_input(key="data_spec").input("   ").run()
    assert at.error and "corpus spec" in at.error[0].value


# --- train -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_train_form_validates_its_input(demo_pair):
    at = open_page("train")
    assert "Estimated duration" in _texts(at)
    key = next(m.key for m in at.multiselect if m.key.startswith("train_dialects_"))
    at.multiselect(key=key).set_value([]).run()
    assert any("at least one dialect" in e.value for e in at.error)
    assert at.button(key="train_launch").disabled
    at.multiselect(key=key).set_value(["CAI"]).run()
    at.text_input(key="train_layers").input("two, three").run()
    assert any("layers must be numbers" in e.value for e in at.error)
    at.text_input(key="train_layers").input("").run()
    at.multiselect(key=key).set_value(["CAI", "EGY"]).run()  # the offline corpus has cities, not groups
    assert any("no training data for EGY" in e.value for e in at.error)


@pytest.mark.slow
def test_train_launches_a_background_job_and_shows_it(demo_pair):
    before = {r.id for r in list_runs()}
    at = open_page("train")
    key = next(m.key for m in at.multiselect if m.key.startswith("train_dialects_"))
    at.multiselect(key=key).set_value(["CAI", "BEI"])
    at.text_input(key="train_source").input(TINY.source)
    at.selectbox(key="train_base").set_value("tiny")
    at.radio(key="train_method").set_value("decoupled")
    at.number_input(key="train_steps").set_value(4)
    at.number_input(key="train_batch_size").set_value(4)
    at.run()
    assert_clean(at)
    assert not at.error
    at.button(key="train_launch").click().run()
    assert_clean(at)
    assert at.success and "Queued" in at.success[0].value
    new = [r for r in list_runs() if r.id not in before]
    assert len(new) == 1 and new[0].config().steps == 4
    try:
        state = jobs.wait(new[0].id, timeout_s=240)
        assert state["state"] == "finished", (state, new[0].log_tail())
        at = open_page("train")
        assert new[0].id in json.dumps(at.dataframe[-1].value.to_dict(orient="records"))
    finally:
        if new[0].state().get("state") in jobs.ACTIVE:
            jobs.cancel(new[0].id, wait_s=30)


# --- steering (issue 12) ---------------------------------------------------------------------

@pytest.mark.slow
def test_compare_with_a_fourth_steered_column(demo_pair):
    at = open_page("compare")
    at.selectbox(key="compare_pair").set_value(demo_pair.key)
    at.toggle(key="compare_steer_on").set_value(True).run()
    assert_clean(at)
    at.selectbox(key="compare_steer_method").set_value("vector").run()
    at.slider(key="compare_steer_strength_vector").set_value(2.0)
    at.multiselect(key="compare_steer_layers").set_value([1, 2])
    at.text_area(key="compare_typed").input("أريد أن أشرب القهوة الآن")
    at.button(key="compare_run").click().run()
    assert_clean(at)
    assert not at.error
    html = "\n".join(m.value for m in at.markdown)
    assert html.count('dir="rtl"') >= 4 and "Steered decoupled: vector, s=2, layers 1,2" in html
    assert "one batched call" in _texts(at)
    at.toggle(key="compare_steer_on").set_value(False).run()  # back to three columns
    at.button(key="compare_run").click().run()
    assert "Steered" not in "\n".join(m.value for m in at.markdown)


def test_results_page_shows_the_arms(empty_models):
    _write_results("with-arms", None)
    path = paths.experiments_dir() / "with-arms" / "results.json"
    data = json.loads(path.read_text(encoding="utf-8"))

    def arm(name, chrf, delta, p, steer=None):
        row = {"variety": "CAI", "name": "Cairo", "n": 6, "chrf": chrf, "bleu": 1.0, "fidelity": 0.5,
               "msa_leakage": 0.2, "delta": delta, "p_value": p}
        return {"name": name, "system": name.split("+")[0], "steer": steer, "rows": [row],
                "average": {**row, "variety": "AVG"}, "msa": {**row, "variety": "MSA"},
                "steering": steer and {**steer, "origin": "estimated", "positions": "generated"}}

    data["arms"] = {"reference": "baseline", "split": "test", "seeds": [0], "bootstrap": 1000, "varieties": ["CAI", "MSA"],
                    "arms": [arm("baseline", 16.0, None, None), arm("decoupled", 16.8, 0.8, 0.03),
                             arm("base+vector", 12.0, -4.0, 0.001, {"method": "vector", "strength": 1.0, "layers": [3]})]}
    write_json_atomic(path, data)
    at = open_page("results")
    at.selectbox[0].set_value("with-arms").run()
    assert_clean(at)
    assert not at.error and "Arms: inference-time steering beside decoupling" in [s.value for s in at.subheader]
    table = next(d.value for d in at.dataframe if "arm" in d.value.columns)
    assert list(table["arm"]) == ["baseline", "decoupled", "base+vector"]
    assert table["steering"].iloc[2] == "vector s=1.0 layers 3" and table["delta"].iloc[1] == pytest.approx(0.8)
