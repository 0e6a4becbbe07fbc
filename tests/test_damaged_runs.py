"""Damaged run folders: a generated set of every kind of damage (missing, empty, truncated,
wrong JSON type, wrong field types, non-UTF-8, binary, a folder where a file belongs, links
out of the folder) to every file of a run, and every page of the app rendered over all of
them at once with AppTest: no page raises, each damaged run is listed with what is wrong in
words and never offered, and the good runs beside them stay usable.

The runs are fake (settings, state, metrics and adapter files written by hand; no model is
loaded), so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend import compare, jobs
from backend.runs import Run, RunConfig, write_json_atomic

REPO = Path(__file__).resolve().parent.parent
PAGES = ("home", "compare", "train", "overlap", "results", "data")

GOOD_BASELINE = "20260101-000000-baseline-good"
GOOD_DECOUPLED = "20260101-000001-decoupled-good"


def _safetensors() -> bytes:
    """A real safetensors file: one float32 tensor of 4 values."""
    text = json.dumps({"__metadata__": {"format": "pt"},
                       "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    return len(text).to_bytes(8, "little") + text + bytes(16)


def _config(method: str) -> RunConfig:
    return RunConfig(method=method, source="offline:size=150", dialects=["CAI", "BEI"], base="tiny", steps=4,
                     batch_size=2)


def _good_run(root: Path, run_id: str, method: str) -> Run:
    run = Run(root / run_id)
    run.dir.mkdir(parents=True)
    write_json_atomic(run.config_path, _config(method).to_dict())
    write_json_atomic(run.state_path, {"state": "finished", "finished": time.time(),
                                       "progress": {"step": 4, "steps": 4, "loss": 1.5}})
    run.metrics_path.write_text("".join(json.dumps({
        "step": step, "loss": 2.0 - step / 4, "overlap": {"2": 0.5 - step / 20}, "probe_acc": {"2": 0.9},
        "code_bits_msa": {"2": 3.0}, "wall_time": step * 0.1}) + "\n" for step in (0, 2, 4)), encoding="utf-8")
    write_json_atomic(run.eval_path, {"split": "test", "average": {"chrf": 12.0}})
    (run.dir / "outputs.jsonl").write_text(json.dumps({"id": "1", "hypothesis": "x"}) + "\n", encoding="utf-8")
    (run.dir / "subspace.safetensors").write_bytes(_safetensors())
    run.adapter_dir.mkdir()
    write_json_atomic(run.adapter_dir / "adapter_config.json", {"peft_type": "LORA", "r": 8})
    (run.adapter_dir / "adapter_model.safetensors").write_bytes(_safetensors())
    run.log_path.write_text("2026-01-01 00:00:00 finished\n", encoding="utf-8")
    return run


OBJECT_FILES = ("config.json", "state.json", "eval.json", "adapter/adapter_config.json")
JSONL_FILES = ("metrics.jsonl", "outputs.jsonl")
TENSOR_FILES = ("subspace.safetensors", "adapter/adapter_model.safetensors")

# Field values of the wrong type, per file: (what is written, whether the run stays usable).
WRONG_FIELDS = {
    "config.json": [{"steps": "many"}, {"dialects": "CAI"}, {"dialects": [1, 2]}, {"lam": [1]},
                    {"layers": ["x"]}, {"include_msa": "yes"}, {"method": "sideways"}, {"dialects": ["ATLANTIS"]}],
    "state.json": [{"state": 3}, {"state": None}, {"progress": [1, 2]}, {"progress": {"step": "x"}},
                   {"error": {"a": 1}}],
}
# Damage that is not damage: the run stays usable (and is offered when it has its adapter).
BENIGN = {
    ("state.json", "missing"), ("eval.json", "missing"), ("metrics.jsonl", "missing"), ("metrics.jsonl", "empty"),
    ("metrics.jsonl", "torn last line"), ("metrics.jsonl", "wrong values"), ("outputs.jsonl", "missing"),
    ("outputs.jsonl", "empty"), ("outputs.jsonl", "torn last line"), ("outputs.jsonl", "wrong values"),
    ("subspace.safetensors", "missing"),
    ("metrics.jsonl", "truncated"), ("outputs.jsonl", "truncated"),  # cut mid-line: a torn last line
}
# Not damaged, but not usable either: without these a run has no adapter to offer.
NO_ADAPTER = {("adapter/adapter_config.json", "missing"), ("adapter/adapter_model.safetensors", "missing")}


def _damage(run: Run, name: str, kind: str, outside: Path) -> None:
    """Apply one kind of damage to the file `name` of `run`."""
    path = run.dir / name
    good = path.read_bytes()
    path.unlink()
    if kind == "missing":
        return
    if kind == "directory":
        path.mkdir()
        return
    if kind == "link out":  # a readable, well-formed file, but outside the run folder
        target = outside / f"{run.id}-{path.name}"
        target.write_bytes(good)
        path.symlink_to(target)
        return
    content = {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "non-UTF-8": b"\xff\xfe" + good,
        "binary": bytes(range(256)) * 4,
        "a list": b"[1, 2, 3]",
        "text": b'"finished"',
        "a number": b"42",
        "null": b"null",
        "torn last line": good + b'{"step": 6, "lo',
        "garbage line": b"not json at all\n" + good,
        "non-object line": b"[1, 2]\n" + good,
        "wrong values": b'{"step": "x", "overlap": {"2": "high"}, "probe_acc": [1], "wall_time": "t"}\n'
                        b'{"step": 8, "overlap": {"2": null, "3": true}, "code_bits_msa": "x"}\n' + good,
    }[kind]
    path.write_bytes(content)


def _variants() -> list[tuple[str, str, dict | None]]:
    out: list[tuple[str, str, dict | None]] = []
    common = ["missing", "empty", "truncated", "non-UTF-8", "binary", "directory", "link out"]
    for name in OBJECT_FILES:
        out += [(name, kind, None) for kind in common + ["a list", "text", "a number", "null"]]
        out += [(name, f"wrong field {i}", fields) for i, fields in enumerate(WRONG_FIELDS.get(name, []))]
    for name in JSONL_FILES:
        out += [(name, kind, None) for kind in common + ["torn last line", "garbage line", "non-object line",
                                                        "wrong values"]]
    for name in TENSOR_FILES:
        out += [(name, kind, None) for kind in ("missing", "empty", "truncated", "binary", "link out")]
    out += [("log.txt", "link out", None)]
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict:
    """A models folder with a good pair and, beside it, one damaged baseline and one damaged
    decoupled run per variant (the baseline sorts between the good two, so an undetected
    damaged baseline would take the good decoupled run's pair), plus damaged folders."""
    root = tmp_path_factory.mktemp("damaged-models")
    outside = tmp_path_factory.mktemp("outside")
    runs = root / "runs"
    _good_run(runs, GOOD_BASELINE, "baseline")
    _good_run(runs, GOOD_DECOUPLED, "decoupled")
    variants: dict[str, tuple[str, str]] = {}
    for i, (name, kind, fields) in enumerate(_variants()):
        for method, stamp in (("baseline", "20260101-000000"), ("decoupled", "20260102-000000")):
            run_id = f"{stamp}-{method}-{'zz' if method == 'baseline' else ''}{i:03d}-{_slug(name)}-{_slug(kind)}"
            run = _good_run(runs, run_id, method)
            if fields is not None:
                data = json.loads((run.dir / name).read_text(encoding="utf-8"))
                write_json_atomic(run.dir / name, {**data, **fields})
            else:
                _damage(run, name, kind, outside)
            variants[run_id] = (name, kind)
    # Folders that are not runs at all, or lead elsewhere.
    (runs / "20260103-000000-empty-folder").mkdir()
    (runs / "20260103-000001-a-file").write_text("not a folder")
    elsewhere = _good_run(outside, "20260103-000002-decoupled-elsewhere", "decoupled")
    (runs / "20260103-000002-decoupled-link").symlink_to(elsewhere.dir)
    variants["20260103-000000-empty-folder"] = ("config.json", "missing")
    variants["20260103-000002-decoupled-link"] = ("the run folder", "link out")
    return {"root": root, "variants": variants}


@pytest.fixture()
def models(damaged, monkeypatch) -> dict:
    monkeypatch.setenv("DD_MODELS_DIR", str(damaged["root"]))
    monkeypatch.setenv("DD_READ_ONLY", "")
    monkeypatch.delenv("DD_PASSWORD", raising=False)
    return damaged


def _usable(name: str, kind: str) -> bool:
    return (name, kind) in BENIGN


def test_each_damaged_run_says_what_is_wrong_and_is_never_offered(models):
    pairs = compare.find_pairs()
    offered = {p.decoupled.id for p in pairs}
    by_decoupled = {p.decoupled.id: p.baseline.id for p in pairs}
    partner = by_decoupled[GOOD_DECOUPLED]  # the newest usable baseline before it, never a damaged one
    assert partner == GOOD_BASELINE or _usable(*models["variants"][partner]), partner
    for run_id, (name, kind) in models["variants"].items():
        run = Run(models["root"] / "runs" / run_id)
        why = run.damage()
        if _usable(name, kind):
            assert why is None, (run_id, why)
            if "-decoupled-" in run_id:
                assert run_id in offered, run_id
            continue
        assert run_id not in offered and run_id not in by_decoupled.values(), run_id
        if (name, kind) in NO_ADAPTER:
            assert not run.has_adapter()
            continue
        assert why and why.startswith(f"run {run_id}: "), (run_id, why)
        assert str(models["root"]) not in why and "/tmp" not in why, why
    damaged = dict(compare.damaged_runs())
    assert GOOD_BASELINE not in damaged and GOOD_DECOUPLED not in damaged
    assert {r.id for r in jobs.comparable_runs()} >= {GOOD_BASELINE, GOOD_DECOUPLED}


def test_the_job_listing_marks_damaged_runs_corrupt_with_the_reason(models):
    listed = {j["id"]: j for j in jobs.list_jobs()}
    for run_id, (name, kind) in models["variants"].items():
        if _usable(name, kind) or (name, kind) in NO_ADAPTER or run_id not in listed:
            continue
        assert listed[run_id]["state"] == "corrupt" and listed[run_id]["reason"], (run_id, listed[run_id])
    assert listed[GOOD_DECOUPLED]["state"] == "finished"


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info] \
        + [w.value for w in at.warning] + [e.value for e in at.error] + [s.value for s in at.success] \
        + [t.value for t in at.title] + [t.value for t in at.subheader] + [str(c.value) for c in at.code]
    return "\n".join(str(p) for p in parts)


def _assert_clean(at: AppTest, models: dict) -> None:
    assert not at.exception, [e.value for e in at.exception]
    bad = [e.value for e in at.error if "Something went wrong" in e.value or "failed (" in e.value]
    assert not bad, bad
    text = _texts(at)
    assert str(models["root"]) not in text and "/tmp/" not in text, text[:2000]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_over_every_damaged_run(models, page):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    _assert_clean(at, models)
    if page != "compare":  # the start page while a pair exists
        at.switch_page(f"pages/{page}.py").run()
        _assert_clean(at, models)
    if page in ("compare", "overlap"):
        select = at.selectbox(key="compare_pair") if page == "compare" else at.selectbox[0]
        for pair in compare.find_pairs():  # every pair offered renders, the damaged-but-usable ones too
            select = at.selectbox(key="compare_pair") if page == "compare" else at.selectbox[0]
            select.set_value(pair.key).run()
            _assert_clean(at, models)
        if page == "overlap":
            at.selectbox[0].set_value(next(p.key for p in compare.find_pairs()
                                           if p.decoupled.id == GOOD_DECOUPLED)).run()
            assert at.get("plotly_chart"), "the good pair's overlap is charted"
        assert "damaged run folder" in "\n".join(e.label for e in at.expander)
    if page == "train":
        table = at.dataframe[-1].value
        assert "corrupt" in set(table["state"])


def test_a_link_out_is_refused_even_when_its_target_is_well_formed(models, tmp_path):
    run = _good_run(tmp_path / "runs", "20260104-000000-decoupled-x", "decoupled")
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(_config("decoupled").to_dict()), encoding="utf-8")
    run.config_path.unlink()
    os.symlink(secret, run.config_path)
    assert "config.json is a link out of the run folder" in run.damage()
    with pytest.raises(Exception, match="link out"):
        run.config()
