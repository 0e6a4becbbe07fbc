"""The demo build (backend.demo, `python -m backend demo`): foreground, detached, status file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend import demo, paths
from backend.__main__ import build_parser
from backend.errors import JobError, RunError
from backend.jobs import process
from backend.runs import list_runs, write_json_atomic

REPO = Path(__file__).resolve().parent.parent
TINY = demo.DemoOptions.tiny()


def _finished_ids() -> set[str]:
    return {r.id for r in list_runs() if r.state().get("state") == "finished"}


def test_options_round_trip_through_the_cli():
    from backend.cli.demo import options_from_args

    options = demo.DemoOptions.tiny(seed=3, base_steps=7)
    args = build_parser("demo").parse_args(["demo", *options.to_args()])
    assert options_from_args(args) == options
    tiny = options_from_args(build_parser("demo").parse_args(["demo", "--tiny", "--steps", "9"]))
    assert (tiny.base_preset, tiny.steps, tiny.dialects) == ("tiny", 9, ["CAI", "BEI"])
    assert options_from_args(build_parser("demo").parse_args(["demo"])) == demo.DemoOptions()


def test_status_of_a_build_that_died_is_interrupted(tmp_path, monkeypatch):
    monkeypatch.setenv("DD_MODELS_DIR", str(tmp_path))
    assert demo.demo_status() == {"state": "none"}
    write_json_atomic(demo.status_path(), {"state": "running", "pid": 999999, "updated": time.time()})
    status = demo.demo_status()
    assert status["state"] == "interrupted" and status["error"]
    with pytest.raises(RunError):
        demo.cancel_demo()
    demo.status_path().write_text("{not json", encoding="utf-8")
    assert demo.demo_status()["state"] == "none"


def test_cancel_signals_the_build_only_while_its_pid_still_names_it(tmp_path, monkeypatch):
    """A status whose pid now belongs to another process (the build died, the pid was
    reused) must not get that process killed."""
    monkeypatch.setenv("DD_MODELS_DIR", str(tmp_path))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        ticks = process.start_ticks(other.pid)
        with demo._build_lock():  # a build holds the lock, so its status is taken at its word
            status = {"state": "running", "pid": other.pid, "started": time.time(), "updated": time.time()}
            write_json_atomic(demo.status_path(), {**status, "pid_start": ticks + 1})
            with pytest.raises(RunError, match="already gone"):
                demo.cancel_demo()
            assert other.poll() is None  # left alone
            write_json_atomic(demo.status_path(), {**status, "pid_start": ticks})
            demo.cancel_demo()
            assert other.wait(timeout=30) == -signal.SIGTERM
    finally:
        other.kill()
        other.wait()


def test_a_second_build_is_refused_while_one_holds_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("DD_MODELS_DIR", str(tmp_path))
    with demo._build_lock():
        assert demo.build_running()
        with pytest.raises(JobError):
            demo.start_background(TINY)
        with pytest.raises(JobError):
            demo.build_demo(TINY)
    assert not demo.build_running()


def test_estimates_prefer_measured_runs():
    per_step, basis = demo.seconds_per_step("no-such-base", 16, runs=[])
    assert per_step > 0 and "constant" in basis
    assert demo.format_duration(42) == "42 s" and demo.format_duration(600) == "10 min"


@pytest.mark.slow
def test_foreground_build_then_reuse(tiny_base):
    # Its own name and seed: other tests (the browser's) may have built the default tiny demo in
    # this session already, and a cached build would skip the stages this test watches.
    options = demo.DemoOptions.tiny(name="demo-tiny-foreground", seed=1)
    seen: list[dict] = []
    status = demo.build_demo(options, on_status=seen.append)
    assert status["state"] == "finished" and status["fraction"] == 1.0
    assert set(status["runs"]) == {"baseline", "decoupled"}
    assert json.loads(demo.status_path().read_text(encoding="utf-8"))["state"] == "finished"
    assert {"base", "baseline", "decoupled", "evaluate"} <= {s["stage"] for s in seen}
    assert (paths.experiments_dir() / options.name / "results.json").is_file()
    fractions = [s["fraction"] for s in seen]
    assert fractions == sorted(fractions)
    before = _finished_ids()
    again = demo.build_demo(options)
    assert again["runs"] == status["runs"] and _finished_ids() == before  # reused, nothing retrained
    per_step, basis = demo.seconds_per_step("tiny", TINY.batch_size)
    assert per_step > 0 and basis.startswith("the median")
    assert demo.demo_ready()


@pytest.mark.slow
def test_background_build_survives_its_parent_and_reports_progress(tiny_base):
    options = demo.DemoOptions.tiny(name="demo-tiny-bg", seed=1, steps=4)
    before = _finished_ids()
    demo.start_background(options)
    deadline = time.time() + 300
    states = set()
    while time.time() < deadline:
        status = demo.demo_status()
        states.add(status["state"])
        if status["state"] in ("finished", "failed", "interrupted", "cancelled"):
            break
        time.sleep(0.5)
    assert status["state"] == "finished", (status, demo.log_tail())
    assert states & {"starting", "running"}
    new = _finished_ids() - before
    assert set(status["runs"].values()) == new and len(new) == 2
    assert not demo.build_running()


def test_cli_status_prints_json(tmp_path):
    env = {**os.environ, "DD_MODELS_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "backend", "demo", "--status"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout) == {"state": "none"}
    out = subprocess.run([sys.executable, "-m", "backend", "demo", "--cancel"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no demo build is running" in out.stderr
