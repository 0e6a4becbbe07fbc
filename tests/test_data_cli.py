"""`python -m backend data summary|show`, in process and as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.__main__ import main

REPO = Path(__file__).resolve().parent.parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_summary_prints_pairs_per_variety_and_split_with_totals(capsys):
    assert main(["data", "summary", "--source", "offline:size=100,seed=4"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("offline:msa_overlap=0.3,seed=4,size=100,source=MSA: ")
    assert lines[1].split() == ["code", "variety", "train", "dev", "test", "total"]
    rows = {line.split()[0]: line for line in lines[3:-2]}
    from backend.varieties import CITY_CODES
    assert list(rows) == ["MSA", *sorted(CITY_CODES)]
    assert "Modern Standard Arabic" in rows["MSA"] and "Khartoum" in rows["KHA"]
    assert rows["CAI"].split()[-4:] == ["80", "10", "10", "100"]
    total = lines[-1].split()
    assert total[0] == "total" and int(total[-1].replace(",", "")) == sum(
        int(r.split()[-1].replace(",", "")) for r in rows.values())


def test_summary_with_dialect_filter_and_show(capsys):
    assert main(["data", "summary", "--source", "offline:size=100", "--dialects", "Beirut,TUN"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[3:-2]]
    assert rows == ["BEI", "TUN"]
    assert main(["data", "show", "--source", "offline:size=100", "--variety", "rabat", "--split", "test", "-n", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 9 and all("[test]  MSA -> RAB" in line for line in out[::3])
    assert out[1].startswith("  MSA: ") and out[2].startswith("  RAB: ")


@pytest.mark.parametrize("argv", [
    ["data", "show", "--source", "offline:size=100", "--variety", "EGY"],
    ["data", "show", "--source", "offline:size=100", "-n", "0"],
    ["data", "show", "--source", "offline:size=100", "--variety", "Narnia"],
    ["data", "summary", "--source", "offline:msa_overlap=2"],
    ["data", "summary", "--source", "nonsense"],
])
def test_user_errors_exit_2_with_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_malformed_csv_exits_2_naming_file_and_line(tmp_path):
    f = tmp_path / "egy_train.csv"
    f.write_text("msa,tweet\nأهلا,هلا\nمرحبا,اهلين,زيادة\n", encoding="utf-8")
    out = _run("data", "summary", "--source", f"csv:{f}")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == f"error: {f}:3: 3 fields where the header has 2\n"


def test_madar_missing_column_exits_2_naming_file_and_line(tmp_path):
    (tmp_path / "MADAR.corpus.MSA.tsv").write_text("sentID.BTEC\tsplit\tsent\n1\tcorpus-6-train\tنص\n", encoding="utf-8")
    (tmp_path / "MADAR.corpus.Cairo.tsv").write_text(
        "sentID.BTEC\tsplit\tlang\tsent\n1\tcorpus-6-train\tCAI\tنص\n", encoding="utf-8")
    out = _run("data", "show", "--source", f"madar:{tmp_path}")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith(f"error: {tmp_path / 'MADAR.corpus.MSA.tsv'}:1: missing column(s) lang")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MADAR.corpus.Cairo.tsv", "MADAR.corpus.MSA.tsv"]


def test_help_lists_the_actions():
    out = _run("data", "--help")
    assert out.returncode == 0 and "summary" in out.stdout and "show" in out.stdout
