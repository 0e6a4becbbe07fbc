"""compare_runs on run folders holding eval.json and outputs.jsonl (no model needed)."""

from __future__ import annotations

import json
import random

import pytest

from backend.errors import RunError
from backend.evaluation.evaluate import compare_runs
from backend.runs import RunConfig, create_run, write_json_atomic

WORDS = "راح الولد على السوق الصبح عايز اشرب قهوة دلوقتي بدي روح هلق كتير منيح".split()


def _evaluated_run(method: str, keep: float, ids=range(40), seed=0):
    rng = random.Random(seed)
    run = create_run(RunConfig(method=method, dialects=["CAI", "BEI"], name="cmp"))
    lines, varieties = [], {}
    for code in ("CAI", "BEI", "MSA"):
        for i in ids:
            ref = " ".join(random.Random(f"{code}{i}").choice(WORDS) for _ in range(7))
            hyp = " ".join(w if rng.random() < keep else rng.choice(WORDS) for w in ref.split())
            lines.append({"id": f"{code}-{i}", "variety": code, "reference": ref, "hypothesis": hyp})
        varieties[code] = {"fidelity": 0.5, "msa_leakage": 0.1, "chrf_raw": None}
    (run.dir / "outputs.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                                           encoding="utf-8")
    write_json_atomic(run.eval_path, {"split": "test", "varieties": varieties,
                                      "identifier": {"accuracy": 0.8}})
    return run


def test_compare_table():
    base, dec = _evaluated_run("baseline", 0.4), _evaluated_run("decoupled", 0.9, seed=1)
    table = compare_runs(base, dec, n_samples=200)
    assert [r["variety"] for r in table["rows"]] == ["CAI", "BEI"] and table["msa"]["variety"] == "MSA"
    for row in table["rows"]:
        assert row["delta"] > 10 and row["p_value"] < 0.05 and row["n"] == 40
    avg = table["average"]
    assert avg["baseline_chrf"] == pytest.approx(sum(r["baseline_chrf"] for r in table["rows"]) / 2)
    assert avg["p_value"] < 0.05 and table["identifier_accuracy"] == 0.8
    same = compare_runs(base, base, n_samples=200)
    assert all(r["p_value"] == 1.0 and r["delta"] == 0 for r in [*same["rows"], same["average"]])


def test_compare_refuses_mismatched_or_missing_evaluations():
    base = _evaluated_run("baseline", 0.5)
    with pytest.raises(RunError, match="different"):
        compare_runs(base, _evaluated_run("decoupled", 0.5, ids=range(30)))
    bare = create_run(RunConfig(method="decoupled", name="bare"))
    with pytest.raises(RunError, match="not evaluated"):
        compare_runs(base, bare)
