"""The experiment command: config parsing, and the CI config end to end with a real tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.errors import UserError
from backend.experiment import config_from_dict, load_config, settings, with_source_option

REPO = Path(__file__).resolve().parent.parent
ROW_KEYS = {"variety", "name", "n", "baseline_chrf", "decoupled_chrf", "delta", "p_value", "baseline_bleu",
            "decoupled_bleu", "fidelity_baseline", "fidelity_decoupled", "msa_leakage_baseline",
            "msa_leakage_decoupled"}
TOP_KEYS = {"id", "name", "config", "hardware", "created", "signatures", "identifier_accuracy", "rows", "average",
            "msa", "runs", "entanglement"}


def test_shipped_configs_parse():
    for name in ("ci", "offline", "dial2msa", "offline-tuning", "offline-selected"):
        config = load_config(REPO / "experiments" / f"{name}.yaml")
        assert config.id == name
    offline = load_config(REPO / "experiments" / "offline.yaml")
    assert len(offline.dialects) >= 8 and offline.base.name == "default"
    main, sweep = settings(offline)
    assert [s.values["msa_overlap"] for s in sweep] == [0.2, 0.5, 0.8]
    assert all("msa_overlap=" in s.source for s in sweep)
    d2m = load_config(REPO / "experiments" / "dial2msa.yaml")
    assert d2m.dialects == ["EGY", "GLF", "LEV", "MGR"] and d2m.base.preset == "dial2msa"
    assert d2m.evaluation.split == "dev"  # Dial2MSA has no test files: its dev split is the test set


def test_a_list_of_sweeps_varies_one_setting_at_a_time():
    tuning = load_config(REPO / "experiments" / "offline-tuning.yaml")
    assert tuning.evaluation.split == "dev"  # tuning never looks at the test split
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


def test_source_options():
    assert with_source_option("offline", "msa_overlap", 0.2) == "offline:msa_overlap=0.2"
    assert with_source_option("offline:seed=1", "msa_overlap", 0.5) == "offline:seed=1,msa_overlap=0.5"
    with pytest.raises(UserError):
        with_source_option("csv:/data/x", "msa_overlap", 0.5)


@pytest.mark.slow
def test_ci_experiment_end_to_end(tiny_base, models_root):
    from backend.experiment import run_experiment

    config = load_config(REPO / "experiments" / "ci.yaml")
    # A sweep whose one setting coincides with the main one: the sweep tables are written
    # and its runs are the main runs, at no extra training cost.
    config.sweep = {"param": "lam", "values": [config.decoupled["lam"]]}
    messages: list[str] = []
    results = run_experiment(config, progress=messages.append)
    folder = models_root / "experiments" / "ci"
    on_disk = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    assert TOP_KEYS <= set(on_disk) and on_disk["id"] == "ci"
    assert [r["variety"] for r in on_disk["rows"]] == ["CAI", "BEI"]
    for row in [*on_disk["rows"], on_disk["average"], on_disk["msa"]]:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert 0 <= row["baseline_chrf"] <= 100 and 0 <= row["decoupled_chrf"] <= 100
        assert 0 < row["p_value"] <= 1
        assert row["delta"] == pytest.approx(row["decoupled_chrf"] - row["baseline_chrf"])
    assert on_disk["average"]["baseline_chrf"] == pytest.approx(
        sum(r["baseline_chrf"] for r in on_disk["rows"]) / 2)
    assert "nw:2" in on_disk["signatures"]["chrf"] and "norm:arabic" in on_disk["signatures"]["chrf"]
    assert 0 <= on_disk["identifier_accuracy"] <= 1
    ent = on_disk["entanglement"]
    assert set(ent["systems"]) == {"base", "baseline", "decoupled"} and ent["projection"]["points"]
    for layer in ent["systems"]["decoupled"]["layers"].values():
        assert 0 <= layer["energy_pca"] <= 1 and -1e-6 <= layer["cka"] <= 1 + 1e-6
        assert all(0 <= a <= 90 for a in layer["principal_angles"])
    assert len(on_disk["sweep"]) == 1 and on_disk["sweep"][0]["setting"] == {"lam": 1.0}
    assert on_disk["sweep"][0]["runs"] == on_disk["runs"]
    assert sum(": training " in m for m in messages) == 2  # baseline and decoupled, once each
    md = (folder / "results.md").read_text(encoding="utf-8")
    assert "| **Average** |" in md and "Modern Standard Arabic (MSA)" in md and "## Sweep over lam" in md
    for rel in on_disk["figures"].values():
        assert (folder / rel).is_file()
    assert (folder / "figures" / "plotly.min.js").is_file()
    assert results["runs"] == on_disk["runs"]

    # a second run finds every stage finished and trains nothing
    again: list[str] = []
    results2 = run_experiment(config, progress=again.append)
    assert not any(": training " in m or "generating" in m or "pretraining" in m for m in again), again
    assert results2["rows"] == results["rows"]

    # another experiment with the same run settings reuses both runs, and a sweep over a
    # setting only the penalty uses retrains the decoupled run alone (the baseline is shared)
    other = load_config(REPO / "experiments" / "ci.yaml")
    other.name, other.entanglement.enabled = "ci-other", False
    other.sweep = [{"param": "probe_every", "values": [3]}]
    third: list[str] = []
    results3 = run_experiment(other, progress=third.append)
    assert sum("reusing " in m for m in third) == 2, third
    assert sum(": training " in m for m in third) == 1, third
    assert results3["runs"] == results["runs"]
    sweep_runs = results3["sweep"][0]["runs"]
    assert sweep_runs["baseline"] == results["runs"]["baseline"] and sweep_runs["decoupled"] != results["runs"]["decoupled"]


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
