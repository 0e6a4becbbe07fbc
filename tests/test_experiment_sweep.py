"""A sweep over a MADAR corpus option and over `probe_every`, end to end on the tiny base:
every setting trains (the probe cadence retrains only the decoupled run), progress arrives
as events, and every setting's runs open as a pair on Compare."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend import compare, paths
from backend.data import load_corpus
from backend.events import Event, read_events
from backend.experiment import config_from_dict, run_experiment

REPO = Path(__file__).resolve().parent.parent
NAMES = {"MSA": "MSA", "ENG": "English", "CAI": "Cairo", "BEI": "Beirut", "RAB": "Rabat"}


def madar_folder(folder: Path, size: int = 80) -> Path:
    """The offline corpus written in MADAR's layout: one TSV per variety, rows aligned by id."""
    rows: dict[str, list[str]] = {code: [] for code in NAMES}
    for pair in load_corpus(f"offline:size={size}", dialects="CAI,BEI,RAB,MSA").pairs:
        sid = pair.id.split("-")[1]
        rows[pair.target_variety].append(f"{sid}\t{pair.split}\t{pair.target_variety}\t{pair.target}")
        if pair.target_variety == "MSA":
            rows["ENG"].append(f"{sid}\t{pair.split}\tEN\t{pair.source}")
    folder.mkdir(parents=True)
    for code, lines in rows.items():
        (folder / f"MADAR.corpus.{NAMES[code]}.tsv").write_text(
            "sentID.BTEC\tsplit\tlang\tsent\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_the_madar_folder_loads_as_madar(tmp_path):
    corpus = load_corpus(f"madar:{madar_folder(tmp_path / 'MADAR')}?cities=CAI,BEI")
    assert set(corpus.target_varieties()) == {"CAI", "BEI", "MSA"}
    assert {p.split for p in corpus.pairs} == {"train", "dev", "test"}


@pytest.mark.slow
def test_a_sweep_over_a_madar_option_and_probe_every_opens_on_compare(tiny_base, tmp_path):
    from streamlit.testing.v1 import AppTest

    folder = madar_folder(tmp_path / "MADAR")
    config = config_from_dict({
        "name": "sweep-madar", "source": f"madar:{folder}?cities=CAI,BEI", "dialects": ["CAI", "BEI"],
        "base": {"name": "tiny", "preset": "tiny"},
        "train": {"steps": 4, "batch_size": 8, "probe_every": 2, "probe_steps": 5, "probe_batch": 8,
                  "lam_warmup": 2, "max_train_pairs": 120, "save_every": 1000},
        "decoupled": {"lam": 1.0},
        "evaluation": {"split": "test", "max_sentences": 4, "batch_size": 16, "max_new_tokens": 8, "bootstrap": 50},
        "entanglement": {"enabled": False},
        "sweep": [{"param": "cities", "values": ["CAI,BEI,RAB"]}, {"param": "probe_every", "values": [3]}],
    })
    events: list[Event] = []
    messages: list[str] = []
    results = run_experiment(config, progress=messages.append, subscribers=[events.append])

    main, (cities, probe) = results["runs"], [s["runs"] for s in results["sweep"]]
    assert results["sweep"][0]["source"].endswith("?cities=CAI,BEI,RAB")  # the option, in madar's syntax
    assert cities["baseline"] != main["baseline"] and cities["decoupled"] != main["decoupled"]
    assert probe["baseline"] == main["baseline"] and probe["decoupled"] != main["decoupled"]
    assert sum(": training " in m for m in messages) == 5

    # progress as events: every training step of every run, and the end
    trained = {e.run for e in events if e.stage == "train" and e.step == 4 and e.total == 4}
    assert trained == {main["baseline"], main["decoupled"], cities["baseline"], cities["decoupled"],
                       probe["decoupled"]}
    assert all(e.method in ("baseline", "decoupled") for e in events if e.stage == "train" and e.step is not None)
    assert events[-1].stage == "done" and events[-1].state == "finished"
    kept = read_events(paths.experiments_dir() / "sweep-madar" / "events.jsonl")
    assert kept[-1] == events[-1] and {e.run for e in kept if e.stage == "train" and e.step == 4} == trained

    # every setting's pair opens on Compare, the probe cadence's with the shared baseline
    keys = {p.key for p in compare.find_pairs()}
    for runs in (main, cities, probe):
        assert f"{runs['baseline']}+{runs['decoupled']}" in keys
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=180).run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    options = at.selectbox(key="compare_pair").options
    for runs in (main, cities, probe):
        assert any(o.endswith(runs["decoupled"]) for o in options), (runs, options)
