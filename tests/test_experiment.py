"""The experiment command: config parsing, the table over seeds, and the CI config end to end
with a real tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.errors import UserError
from backend.experiment import (
    Experiment,
    config_from_dict,
    load_config,
    results_markdown,
    settings,
)

REPO = Path(__file__).resolve().parent.parent
ROW_KEYS = {"variety", "name", "n", "baseline_chrf", "decoupled_chrf", "delta", "p_value", "baseline_bleu",
            "decoupled_bleu", "fidelity_baseline", "fidelity_decoupled", "msa_leakage_baseline",
            "msa_leakage_decoupled"}
TOP_KEYS = {"id", "name", "config", "hardware", "created", "signatures", "identifier_accuracy", "rows", "average",
            "msa", "runs", "entanglement"}


def test_shipped_configs_parse():
    for name in ("ci", "offline", "dial2msa"):
        config = load_config(REPO / "experiments" / f"{name}.yaml")
        assert config.id == name
    offline = load_config(REPO / "experiments" / "offline.yaml")
    assert len(offline.dialects) == 25 and offline.base.name == "default" and offline.seed_list == [0, 1, 2]
    main, sweep = settings(offline)
    assert [s.values["msa_overlap"] for s in sweep] == [0.2, 0.5, 0.8]
    assert all("msa_overlap=" in s.source for s in sweep)
    d2m = load_config(REPO / "experiments" / "dial2msa.yaml")
    assert d2m.dialects == ["EGY", "GLF", "LEV", "MGR"] and d2m.base.preset == "dial2msa"
    assert d2m.evaluation.split == "dev"  # Dial2MSA has no test files: its dev split is the test set


def test_a_list_of_sweeps_varies_one_setting_at_a_time():
    tuning = config_from_dict({
        "name": "tuning", "train": {"steps": 300}, "decoupled": {"lam": 1.0}, "evaluation": {"split": "dev"},
        "sweep": [{"param": "lam", "values": [0.3, 3.0]}, {"param": "layers", "values": [[1, 2, 3, 4, 5, 6]]},
                  {"param": "probe_every", "values": [50]}, {"param": "lora_rank", "values": [16]}]})
    main, sweep = settings(tuning)
    assert [s.label for s in sweep] == ["lam=0.3", "lam=3.0", "layers=[1, 2, 3, 4, 5, 6]", "probe_every=50",
                                        "lora_rank=16"]
    by_label = {s.label: s for s in sweep}
    # penalty-only settings leave the baseline's training settings alone (it is shared) ...
    for label in ("lam=3.0", "layers=[1, 2, 3, 4, 5, 6]", "probe_every=50"):
        assert by_label[label].train == main.train and by_label[label].decoupled != main.decoupled
    assert by_label["probe_every=50"].decoupled["probe_every"] == 50
    # ... while the LoRA rank changes both runs, so both are retrained
    assert by_label["lora_rank=16"].train["lora_rank"] == 16
    with pytest.raises(UserError, match="sweep over 'seed'"):
        config_from_dict({"name": "x", "sweep": [{"param": "lam", "values": [1]}, {"param": "seed", "values": [1]}]})


def test_config_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="name"):
        config_from_dict({"source": "offline"})
    with pytest.raises(UserError, match="unknown"):
        config_from_dict({"name": "x", "stepz": 3})
    with pytest.raises(UserError, match="cannot set"):
        config_from_dict({"name": "x", "train": {"seed": 3}})
    with pytest.raises(UserError, match="sweep"):
        config_from_dict({"name": "x", "sweep": {"param": "lam"}})
    with pytest.raises(UserError, match="training split"):
        config_from_dict({"name": "x", "evaluation": {"split": "train"}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(UserError, match="cannot parse"):
        load_config(bad)


def test_seeds_config(tmp_path):
    config = config_from_dict({"name": "x", "seeds": [0, 1, 2]})
    assert config.seed_list == [0, 1, 2]
    assert config_from_dict(config.to_dict()).seed_list == [0, 1, 2]  # config.json parses back
    one = config_from_dict({"name": "x", "seed": 3})
    assert one.seed_list == [3] and "seeds" not in one.to_dict() and one.to_dict()["seed"] == 3
    assert config_from_dict({"name": "x"}).seed_list == [0]
    assert load_config(REPO / "experiments" / "ci.yaml").seed_list == [0, 1]
    with pytest.raises(UserError, match="not both"):
        config_from_dict({"name": "x", "seed": 0, "seeds": [0, 1]})
    for bad in ([], [0, 0], "0,1", [0, "1"], [True]):
        with pytest.raises(UserError, match="seeds"):
            config_from_dict({"name": "x", "seeds": bad})
    # every seed trains its own runs: RunConfig.seed is the seed, names tell the seeds apart
    exp = Experiment(config, root=tmp_path)
    main, _ = settings(config)
    runs = [exp.run_config(main, "decoupled", "tiny", seed) for seed in config.seed_list]
    assert [r.seed for r in runs] == [0, 1, 2] and len({r.name for r in runs}) == 3
    assert Experiment(one, root=tmp_path).run_config(main, "baseline", "tiny").seed == 3


# --- the table over seeds, on hand-made outputs ----------------------------------------------

REFS = {code: [f"{code.lower()} sentence number {i} about the hotel room and the {w} near the station"
               for i, w in enumerate(("bus", "train", "market", "doctor", "bank", "museum", "airport", "beach",
                                      "bridge", "garden", "school", "bakery"))]
        for code in ("CAI", "BEI", "MSA")}


def _worse(text: str, k: int) -> str:
    """A hypothesis strictly worse than the reference: words dropped and garbled."""
    words = text.split()
    return " ".join(w[::-1] if i % 3 == k % 3 else w for i, w in enumerate(words[: len(words) - 2 - k % 2]))


def _fake_run(folder: Path, hyps: dict[str, list[str]]):
    """A run folder with what compare_runs reads: eval.json and outputs.jsonl."""
    from backend.evaluation import metrics
    from backend.runs import Run

    folder.mkdir(parents=True)
    lines, varieties_ = [], {}
    for code, hs in hyps.items():
        varieties_[code] = {"variety": code, **metrics.corpus_scores(hs, REFS[code]), "fidelity": 1.0,
                            "msa_leakage": 0.0}
        lines += [{"id": f"{code}-{i}", "variety": code, "hypothesis": h, "reference": r}
                  for i, (h, r) in enumerate(zip(hs, REFS[code]))]
    (folder / "outputs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    (folder / "eval.json").write_text(json.dumps({"split": "test", "varieties": varieties_,
                                                  "identifier": {"accuracy": 0.9}}), encoding="utf-8")
    return Run(folder)


def _pairs(tmp_path: Path, seeds, baseline, decoupled):
    return [(_fake_run(tmp_path / f"b{s}", {c: [baseline(r, s) for r in REFS[c]] for c in REFS}),
             _fake_run(tmp_path / f"d{s}", {c: [decoupled(r, s) for r in REFS[c]] for c in REFS})) for s in seeds]


def test_seed_and_variety_stratified_bootstrap_identical_systems(tmp_path):
    from backend.evaluation.evaluate import compare_seeds

    pairs = _pairs(tmp_path, [0, 1, 2], lambda r, s: _worse(r, s), lambda r, s: _worse(r, s))
    table = compare_seeds(pairs, [0, 1, 2], n_samples=200)
    assert table["seeds"] == [0, 1, 2] and [r["variety"] for r in table["rows"]] == ["CAI", "BEI"]
    for row in [*table["rows"], table["average"], table["msa"]]:
        assert row["delta"] == pytest.approx(0) and row["deltas"] == pytest.approx([0, 0, 0])
        assert row["p_value"] == 1.0
        # the seeds' baselines differ (each garbles other words), so there is a spread
        assert row["baseline_chrf_sd"] > 0 and row["baseline_chrf_sd"] == pytest.approx(row["decoupled_chrf_sd"])


def test_seed_and_variety_stratified_bootstrap_better_system(tmp_path, monkeypatch):
    from backend.evaluation import evaluate, metrics, report

    seeds = [0, 1]
    pairs = _pairs(tmp_path, seeds, lambda r, s: _worse(r, s), lambda r, s: r)
    singles = [evaluate.compare_runs(b, d, n_samples=200) for b, d in pairs]
    assert evaluate.compare_seeds(pairs, seeds, n_samples=200) == evaluate.compare_seeds(
        pairs, seeds, n_samples=200, tables=singles)
    calls = []
    real = metrics.paired_bootstrap_average
    monkeypatch.setattr(metrics, "paired_bootstrap_average",
                        lambda strata, metric="chrf", **kw: calls.append((metric, len(strata))) or real(strata, metric,
                                                                                                        **kw))
    table = evaluate.compare_seeds(pairs, seeds, n_samples=200, tables=singles)
    # the one stratified bootstrap: per variety one stratum per seed; the average one per (dialect, seed)
    assert calls == [("chrf", 2), ("bleu", 2)] * 3 + [("chrf", 4), ("bleu", 4)]
    for row in [*table["rows"], table["average"], table["msa"]]:
        assert row["p_value"] < 0.01 and row["delta"] > 10 and all(d > 10 for d in row["deltas"])
        assert row["decoupled_chrf"] == pytest.approx(100) and row["decoupled_chrf_sd"] == pytest.approx(0)
    for i, single in enumerate(singles):  # the per-seed figures are each seed's own table
        assert [r["delta"] for r in table["rows"]] != [] and table["per_seed"][i]["rows"] == single["rows"]
        assert table["average"]["deltas"][i] == pytest.approx(single["average"]["delta"])
        assert table["rows"][0]["baseline_chrf_seeds"][i] == pytest.approx(single["rows"][0]["baseline_chrf"])
    assert table["average"]["baseline_chrf"] == pytest.approx(
        sum(s["average"]["baseline_chrf"] for s in singles) / 2)
    # one seed: exactly the single-run table
    assert {k: v for k, v in evaluate.compare_seeds(pairs[:1], [0], n_samples=200).items() if k != "seeds"} \
        == singles[0]
    md = report.comparison_markdown(table, "Main setting")
    assert "| Baseline chrF++ (mean ± sd) |" in md and "Seeds 0, 1:" in md
    cai = next(line for line in md.splitlines() if line.startswith("| Cairo"))
    r = table["rows"][0]
    assert f"{r['baseline_chrf']:.2f} ± {r['baseline_chrf_sd']:.2f}" in cai
    assert f"{r['delta']:+.2f} ({r['deltas'][0]:+.2f}, {r['deltas'][1]:+.2f})" in cai
    single_md = report.comparison_markdown(singles[0])
    assert "| Baseline chrF++ | Decoupled chrF++ | Δ | p |" in single_md and "±" not in single_md
    sweep = report.sweep_markdown([{**table, "setting": {"lam": 1.0}}])
    assert "± " in sweep and f"{table['average']['delta']:+.2f} (" in sweep


def _swept_sources(source: str, param: str, values: list) -> list[str]:
    return [s.source for s in settings(config_from_dict({"name": "x", "source": source,
                                                         "sweep": {"param": param, "values": values}}))[1]]


def test_a_sweep_writes_corpus_options_in_each_kinds_own_syntax():
    from backend.data.sources import Spec

    assert _swept_sources("offline", "msa_overlap", [0.2]) == ["offline:msa_overlap=0.2"]
    assert _swept_sources("offline:seed=1", "msa_overlap", [0.5]) == ["offline:seed=1,msa_overlap=0.5"]
    # madar and csv join options with '&' after '?': a comma there would read as part of a value
    madar = _swept_sources("madar:/data/MADAR?source=ENG", "cities", ["CAI,BEI", "CAI"])
    assert [Spec.parse(s).options for s in madar] == [{"source": "ENG", "cities": "CAI,BEI"},
                                                       {"source": "ENG", "cities": "CAI"}]
    assert {Spec.parse(s).target for s in madar} == {"/data/MADAR"}
    csv = _swept_sources("csv:/data/x.tsv", "variety", ["EGY"])
    assert Spec.parse(csv[0]).options == {"variety": "EGY"} and Spec.parse(csv[0]).target == "/data/x.tsv"
    with pytest.raises(UserError, match="msa_overlap"):
        _swept_sources("csv:/data/x.tsv", "msa_overlap", [0.5])  # not an option csv takes


@pytest.mark.slow
def test_ci_experiment_end_to_end(tiny_base, models_root):
    from backend.experiment import run_experiment

    config = load_config(REPO / "experiments" / "ci.yaml")
    assert config.seed_list == [0, 1]
    # A sweep whose one setting coincides with the main one: the sweep tables are written
    # and its runs are the main runs, at no extra training cost.
    config.sweep = {"param": "lam", "values": [config.decoupled["lam"]]}
    messages: list[str] = []
    results = run_experiment(config, progress=messages.append)
    folder = models_root / "experiments" / "ci"
    on_disk = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    assert TOP_KEYS <= set(on_disk) and on_disk["id"] == "ci"
    assert [r["variety"] for r in on_disk["rows"]] == ["CAI", "BEI"]
    assert on_disk["seeds"] == [0, 1] and [p["seed"] for p in on_disk["per_seed"]] == [0, 1]
    by_seed = on_disk["runs_by_seed"]
    assert len({r[m] for r in by_seed for m in ("baseline", "decoupled")}) == 4  # each seed its own runs
    assert on_disk["runs"] == {m: by_seed[0][m] for m in ("baseline", "decoupled")}
    for row in [*on_disk["rows"], on_disk["average"], on_disk["msa"]]:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert 0 <= row["baseline_chrf"] <= 100 and 0 <= row["decoupled_chrf"] <= 100
        assert 0 < row["p_value"] <= 1
        assert row["delta"] == pytest.approx(row["decoupled_chrf"] - row["baseline_chrf"])
        assert len(row["deltas"]) == 2 and row["delta"] == pytest.approx(sum(row["deltas"]) / 2)
        assert row["baseline_chrf_sd"] is not None and row["decoupled_chrf_sd"] is not None
    assert on_disk["average"]["baseline_chrf"] == pytest.approx(
        sum(r["baseline_chrf"] for r in on_disk["rows"]) / 2)
    for i, seed_table in enumerate(on_disk["per_seed"]):
        assert on_disk["average"]["deltas"][i] == pytest.approx(seed_table["average"]["delta"])
        assert on_disk["rows"][0]["baseline_chrf_seeds"][i] == pytest.approx(seed_table["rows"][0]["baseline_chrf"])
    assert "dialects and seeds" in on_disk["average"]["p_value_method"]
    assert "nw:2" in on_disk["signatures"]["chrf"] and "norm:arabic" in on_disk["signatures"]["chrf"]
    assert 0 <= on_disk["identifier_accuracy"] <= 1
    ent = on_disk["entanglement"]
    assert set(ent["systems"]) == {"base", "baseline", "decoupled"} and ent["projection"]["points"]
    assert ent["seeds"] == [0, 1] and ent["systems"]["decoupled"]["mean"]["cka"] == pytest.approx(
        sum(p["systems"]["decoupled"]["cka"] for p in ent["per_seed"]) / 2)
    for layer in ent["systems"]["decoupled"]["layers"].values():
        assert 0 <= layer["energy_pca"] <= 1 and -1e-6 <= layer["cka"] <= 1 + 1e-6
        assert all(0 <= a <= 90 for a in layer["principal_angles"])
    assert len(on_disk["sweep"]) == 1 and on_disk["sweep"][0]["setting"] == {"lam": 1.0}
    assert on_disk["sweep"][0]["runs"] == on_disk["runs"]
    assert on_disk["sweep"][0]["runs_by_seed"] == on_disk["runs_by_seed"]
    assert sum(": training " in m for m in messages) == 4  # baseline and decoupled, once per seed
    md = (folder / "results.md").read_text(encoding="utf-8")
    assert "| **Average** |" in md and "Modern Standard Arabic (MSA)" in md and "## Sweep over lam" in md
    assert "Seeds: 0, 1 " in md and "| Baseline chrF++ (mean ± sd) |" in md and "mean over layers, then over seeds" in md
    assert md == results_markdown(on_disk)
    for rel in on_disk["figures"].values():
        assert (folder / rel).is_file()
    assert (folder / "figures" / "plotly.min.js").is_file()
    assert results["runs"] == on_disk["runs"]

    # a second run finds every stage finished and trains nothing
    again: list[str] = []
    results2 = run_experiment(config, progress=again.append)
    assert not any(": training " in m or "generating" in m or "pretraining" in m for m in again), again
    assert results2["rows"] == results["rows"]

    # another experiment with the same run settings reuses every seed's runs, and a sweep over
    # a setting only the penalty uses retrains the decoupled runs alone (each seed's baseline
    # is shared)
    other = load_config(REPO / "experiments" / "ci.yaml")
    other.name, other.entanglement.enabled = "ci-other", False
    other.sweep = [{"param": "probe_every", "values": [3]}]
    third: list[str] = []
    results3 = run_experiment(other, progress=third.append)
    assert sum("reusing " in m for m in third) == 4, third
    assert sum(": training " in m for m in third) == 2, third
    assert results3["runs_by_seed"] == results["runs_by_seed"]
    for mine, main_runs in zip(results3["sweep"][0]["runs_by_seed"], results["runs_by_seed"]):
        assert mine["baseline"] == main_runs["baseline"] and mine["decoupled"] != main_runs["decoupled"]

    # one seed (`seed: 0`): seed 0's runs again, and the single-run tables of today
    single = load_config(REPO / "experiments" / "ci.yaml")
    single.name, single.seeds, single.seed, single.entanglement.enabled = "ci-single", None, 0, False
    fourth: list[str] = []
    results4 = run_experiment(single, progress=fourth.append)
    assert not any(": training " in m for m in fourth), fourth
    assert results4["runs"] == results["runs"] and results4["seeds"] == [0] and "per_seed" not in results4
    assert results4["rows"] == on_disk["per_seed"][0]["rows"] and "deltas" not in results4["rows"][0]
    md4 = (models_root / "experiments" / "ci-single" / "results.md").read_text(encoding="utf-8")
    assert "| Baseline chrF++ | Decoupled chrF++ | Δ | p |" in md4 and "±" not in md4 and "Seeds:" not in md4


@pytest.mark.slow
def test_evaluate_cli_reads_the_experiment_runs(tiny_base, models_root, capsys):
    from backend.__main__ import main
    from backend.experiment import run_experiment

    results = run_experiment(load_config(REPO / "experiments" / "ci.yaml"), progress=lambda m: None)
    runs = results["runs"]
    assert main(["evaluate", runs["baseline"], runs["decoupled"], "--skip-existing"]) == 0
    out = capsys.readouterr().out
    assert "chrF++: nrefs:1" in out and "| **Average** |" in out
    assert main(["evaluate", "no-such-run"]) == 2
    assert "no run named" in capsys.readouterr().err
