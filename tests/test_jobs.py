"""Background jobs: queue, worker, repair of dead jobs, cancel, resume.

The mechanics tests use real processes (python -c ... that sleep or ignore SIGTERM) where a
training run would only slow them down; the `slow` tests run real tiny trainings through
the real worker: kill -9, two launches, cancel, resume. Every wait polls with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend import jobs, paths
from backend.errors import JobError, LimitError, PathError, RunError
from backend.jobs import locks, process
from backend.runs import PROBE_STATE, Run, RunConfig, create_run, get_run, list_runs, write_json_atomic

REPO = Path(__file__).resolve().parent.parent
DEADLINE_S = 120.0


def poll(check, timeout_s: float = DEADLINE_S, every_s: float = 0.1, what: str = "condition"):
    """Call `check` until it returns something truthy; fail (not a timing assertion: a hang
    guard) if it never does."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    pytest.fail(f"gave up waiting for {what} after {timeout_s:.0f} s")


def _kill_everything() -> None:
    """Teardown: stop every job process and the worker of this test's runs folder."""
    pid = locks.worker_pid()
    if pid:
        process.send(pid, signal.SIGKILL)
    for run in list_runs():
        try:
            state = json.loads(run.state_path.read_text())
        except (OSError, ValueError):
            continue
        if state.get("state") == "running" and isinstance(state.get("pid"), int) and state["pid"] != os.getpid():
            if process.process_alive(state["pid"], state.get("pid_start")):
                process.send(state["pid"], signal.SIGKILL)
    for p in jobs.queue._spawned:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    jobs.queue._spawned.clear()


@pytest.fixture
def jobs_root(tmp_path, monkeypatch, models_root):
    """A runs folder of the test's own; data roots: the test folder and the session models."""
    monkeypatch.setenv("DD_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("DD_DATA_ROOTS", os.pathsep.join([str(tmp_path), str(models_root)]))
    monkeypatch.setenv("DD_CANCEL_GRACE_S", "20")
    yield paths.runs_dir()
    _kill_everything()


@pytest.fixture
def no_worker(jobs_root):
    """Hold the worker lock in this process, so nothing the test queues is started."""
    fd = locks.take_worker_lock()
    assert fd is not None
    yield
    os.close(fd)


def _sleeper(code: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _running_run(proc: subprocess.Popen, **extra) -> Run:
    """A run folder whose state says `proc` is training it, as the worker writes it."""
    run = create_run(RunConfig(steps=10, batch_size=2))
    now = time.time()
    write_json_atomic(run.state_path, {"state": "running", "pid": proc.pid, "pid_start": process.start_ticks(proc.pid),
                                       "started": now, "heartbeat": now, "worker": os.getpid(), **extra})
    return run


# --- process facts --------------------------------------------------------------------------

def test_process_alive_tells_dead_zombie_and_reused_pids_apart():
    proc = _sleeper("import time; time.sleep(60)")
    try:
        ticks = process.start_ticks(proc.pid)
        assert process.process_alive(proc.pid, ticks)
        assert process.process_alive(proc.pid, not_after=time.time())
        assert not process.process_alive(proc.pid, ticks + 1)  # same pid, another process
        assert not process.process_alive(proc.pid, not_after=time.time() - 3600)  # started after the run
    finally:
        proc.kill()
    poll(lambda: not process.process_alive(proc.pid, ticks), what="the killed process to be seen as dead")
    assert not process.process_alive(None) and not process.process_alive(-1)


def test_only_one_worker_holds_the_lock(jobs_root):
    assert not locks.worker_running()
    fd = locks.take_worker_lock()
    try:
        assert locks.worker_running() and locks.worker_pid() == os.getpid()
        assert locks.take_worker_lock() is None
        out = subprocess.run([sys.executable, "-m", "backend", "jobs", "worker"], cwd=REPO, timeout=60,
                             capture_output=True, text=True)
        assert out.returncode == 0 and "started" not in out.stdout  # it saw the lock and left
    finally:
        os.close(fd)
    assert not locks.worker_running()


# --- repair and listing ---------------------------------------------------------------------

def test_a_dead_job_becomes_failed_with_its_log_tail(no_worker):
    proc = _sleeper("import time; print('step 1 of 10', flush=True); time.sleep(60)")
    run = _running_run(proc)
    run.log("loading the model")
    assert jobs.job_status(run.id)["state"] == "running"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    status = poll(lambda: (s := jobs.job_status(run.id))["state"] != "running" and s, what="repair")
    assert status["state"] == "failed"
    assert "is gone" in status["error"] and "loading the model" in status["error"]
    assert "failed: the training process is gone" in run.log_tail()
    assert run.id not in [r.id for r in jobs.comparable_runs()]


def test_a_running_state_whose_pid_was_reused_is_repaired(no_worker):
    """The pid in state.json now belongs to another, younger process (here: this test)."""
    run = create_run(RunConfig(steps=10, batch_size=2))
    write_json_atomic(run.state_path, {"state": "running", "pid": os.getpid(), "started": time.time() - 86400,
                                       "heartbeat": time.time() - 86400})
    assert jobs.list_jobs()[0]["state"] == "failed"


def test_a_corrupted_run_folder_does_not_break_the_listing(no_worker, capsys):
    from backend.cli import jobs as jobs_cli
    from backend.cli import runs as runs_cli

    good = create_run(RunConfig(steps=10, batch_size=2, name="good"))
    write_json_atomic(good.state_path, {"state": "queued", "queued_at": time.time()})
    bad_config = create_run(RunConfig(steps=10, batch_size=2, name="badconfig"))
    bad_config.config_path.write_text("{not json")
    bad_state = create_run(RunConfig(steps=10, batch_size=2, name="badstate"))
    bad_state.state_path.write_bytes(b"\xff\xfe\x00garbage")
    unknown = create_run(RunConfig(steps=10, batch_size=2, name="unknown"))
    unknown.config_path.write_text(json.dumps({"method": "decoupled", "what": 1}))
    no_config = paths.runs_dir() / "20000101-000000-empty"
    no_config.mkdir()
    wrong_types = create_run(RunConfig(steps=10, batch_size=2, name="types"))
    wrong_types.config_path.write_text(json.dumps({"method": "baseline", "dialects": 5}))
    odd_queue = create_run(RunConfig(steps=10, batch_size=2, name="oddqueue"))
    write_json_atomic(odd_queue.state_path, {"state": "queued", "queued_at": "soon"})
    listed = {j["id"]: j for j in jobs.list_jobs()}
    assert listed[good.id]["state"] == "queued"
    assert listed[odd_queue.id]["position"] == 1 and listed[good.id]["position"] == 2
    for run_id in (bad_config.id, bad_state.id, unknown.id, no_config.name, wrong_types.id):
        assert listed[run_id]["state"] == "corrupt" and listed[run_id]["reason"], run_id
    assert "unknown run settings: what" in listed[unknown.id]["reason"]
    assert jobs.comparable_runs() == []
    assert len(list(list_runs())) == 7
    for cli, argv in ((jobs_cli, ["list"]), (runs_cli, ["list"])):
        from backend.__main__ import build_parser

        command = "jobs" if cli is jobs_cli else "runs"
        assert cli.main(build_parser(command).parse_args([command, *argv])) == 0
        out = capsys.readouterr().out
        assert out.count("corrupt") >= 5 and good.id in out
    with pytest.raises(JobError, match="cannot cancel"):
        jobs.cancel(bad_config.id)


def test_cancel_a_queued_job_at_once(no_worker):
    run = create_run(RunConfig(steps=10, batch_size=2))
    write_json_atomic(run.state_path, {"state": "queued", "queued_at": time.time()})
    assert jobs.cancel(run.id)["state"] == "cancelled"
    with pytest.raises(JobError, match="is cancelled; only a queued or running job can be cancelled"):
        jobs.cancel(run.id)
    with pytest.raises(JobError, match="nothing to resume"):
        jobs.resume(run.id)


def test_cancel_kills_a_job_that_ignores_sigterm(no_worker, monkeypatch):
    monkeypatch.setenv("DD_CANCEL_GRACE_S", "1")
    proc = _sleeper("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                    "print('ready', flush=True); time.sleep(120)")
    run = _running_run(proc)
    time.sleep(0.5)  # let it install its handler: otherwise SIGTERM would simply end it
    status = jobs.cancel(run.id, wait_s=DEADLINE_S)
    assert status["state"] == "cancelled"
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert "SIGKILL" in run.log_tail()


def test_resume_needs_a_failed_or_cancelled_run_with_a_checkpoint(no_worker):
    run = create_run(RunConfig(steps=10, batch_size=2))
    write_json_atomic(run.state_path, {"state": "finished"})
    with pytest.raises(JobError, match="is finished; only a failed or cancelled run can be resumed"):
        jobs.resume(run.id)
    write_json_atomic(run.state_path, {"state": "failed", "error": "boom"})
    with pytest.raises(JobError, match="before its first checkpoint"):
        jobs.resume(run.id)
    ckpt = run.checkpoints_dir / "checkpoint-5"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    with pytest.raises(JobError, match="before its first checkpoint"):  # half-written: no probe state yet
        jobs.resume(run.id)
    (ckpt / PROBE_STATE).write_bytes(b"")
    jobs.resume(run.id)
    state = run.state()
    assert state["state"] == "queued" and state["resume"] is True and state["previous"]["error"] == "boom"
    with pytest.raises(RunError, match="invalid run id"):
        jobs.resume("../" + run.id)


def test_launch_refuses_over_the_caps_and_outside_the_roots(no_worker, monkeypatch, tmp_path):
    with pytest.raises(LimitError, match="DD_MAX_STEPS"):
        jobs.launch(RunConfig(steps=10**6))
    with pytest.raises(PathError, match="outside the allowed data folders"):
        jobs.launch(RunConfig(steps=10, source="csv:/etc/passwd"))
    with pytest.raises(PathError, match="outside"):
        jobs.launch(RunConfig(steps=10, base="/usr"))
    assert list(list_runs()) == []  # nothing was created
    monkeypatch.setenv("DD_MAX_QUEUE", "2")
    for _ in range(2):
        run = create_run(RunConfig(steps=10, batch_size=2))
        write_json_atomic(run.state_path, {"state": "queued", "queued_at": time.time()})
    with pytest.raises(LimitError, match="2 jobs are already waiting"):
        jobs.launch(RunConfig(steps=10, max_train_pairs=10))
    assert len(list(list_runs())) == 2


def test_queue_order_is_first_in_first_out(no_worker):
    ids = []
    for i, at in enumerate((300.0, 100.0, 200.0)):
        run = create_run(RunConfig(steps=10, batch_size=2, name=f"j{i}"))
        write_json_atomic(run.state_path, {"state": "queued", "queued_at": at})
        ids.append(run.id)
    positions = {j["id"]: j["position"] for j in jobs.list_jobs()}
    assert [positions[i] for i in ids] == [3, 1, 2]
    action, run, _ = jobs.queue.next_action(jobs.queue.scan())
    assert action == "start" and run.id == ids[1]
    assert get_run(ids[1]).id == ids[1]


def test_simultaneous_launches_queue_in_order_under_the_cap(no_worker, monkeypatch):
    """Four launches at the same instant from four threads: the queue lock lets exactly
    `DD_MAX_QUEUE` in, each with its own place."""
    import threading

    monkeypatch.setenv("DD_MAX_QUEUE", "3")
    barrier, results = threading.Barrier(4), []

    def go(i: int) -> None:
        barrier.wait()
        try:
            results.append(jobs.launch(RunConfig(steps=10, batch_size=2, max_train_pairs=10, name=f"t{i}")).id)
        except LimitError as e:
            results.append(e)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    launched = [r for r in results if isinstance(r, str)]
    assert len(launched) == 3 and sum(isinstance(r, LimitError) for r in results) == 1
    positions = sorted(j["position"] for j in jobs.list_jobs() if j["state"] == "queued")
    assert positions == [1, 2, 3]


def test_the_cli_lists_shows_cancels_and_explains(no_worker, capsys):
    from backend.__main__ import main

    run = create_run(RunConfig(steps=10, batch_size=2, name="cli"))
    write_json_atomic(run.state_path, {"state": "queued", "queued_at": time.time()})
    assert main(["jobs", "list", "--active"]) == 0
    assert "#1 in queue" in capsys.readouterr().out
    assert main(["jobs", "show", run.id]) == 0
    out = capsys.readouterr().out
    assert "state            queued" in out and "position         1" in out
    assert main(["jobs", "cancel", run.id]) == 0
    assert f"{run.id}: cancelled" in capsys.readouterr().out
    assert main(["jobs", "resume", run.id]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["jobs", "show", "../etc"]) == 2
    assert main(["runs", "show", run.id]) == 0
    assert "steps            10" in capsys.readouterr().out
    assert main(["jobs", "launch", "--steps", "999999"]) == 2
    assert "DD_MAX_STEPS" in capsys.readouterr().err


# --- real tiny trainings through the real worker ----------------------------------------------

def tiny_config(base: Path, steps: int, **overrides) -> RunConfig:
    values = dict(method="decoupled", source="offline:size=400", dialects=["CAI", "BEI"], base=str(base),
                  steps=steps, batch_size=4, max_length=48, probe_every=5, save_every=5)
    values.update(overrides)
    return RunConfig(**values)


@pytest.fixture
def real_jobs(jobs_root, tiny_base, monkeypatch):
    # One intra-op thread: on a shared 2-core machine, torch's spinning threads cost the
    # tiny model ten times its CPU time; the job processes inherit this environment.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tiny_base


def _state(run_id: str) -> str:
    return jobs.job_status(run_id)["state"]


def _at_step(run: Run, step: int):
    records = run.metrics()
    return records and records[-1]["step"] >= step


@pytest.mark.slow
def test_kill_9_fails_the_job_and_the_next_queued_one_runs(real_jobs):
    first = jobs.launch(tiny_config(real_jobs, steps=400, name="long"))
    second = jobs.launch(tiny_config(real_jobs, steps=4, name="short"))
    assert _state(second.id) == "queued"
    poll(lambda: _at_step(first, 1), what="the first job's first step")
    status = jobs.job_status(first.id)
    assert status["state"] == "running" and _state(second.id) == "queued"  # one heavy job at a time
    assert jobs.job_status(second.id)["position"] == 1

    os.kill(status["pid"], signal.SIGKILL)
    failed = poll(lambda: (s := jobs.job_status(first.id))["state"] != "running" and s, what="the failed state")
    assert failed["state"] == "failed"
    assert failed["error"].startswith("the training process was killed by SIGKILL")
    assert "--- last lines of log.txt ---" in failed["error"] and "decoupled run" in failed["error"]
    assert not first.has_adapter()

    done = poll(lambda: (s := jobs.job_status(second.id))["state"] not in jobs.ACTIVE and s,
                what="the second job to finish")
    assert done["state"] == "finished", done.get("error")
    assert [r["step"] for r in second.metrics()] == [1, 2, 3, 4]
    assert {p.suffix for p in second.adapter_dir.iterdir()} <= {".json", ".safetensors", ".md"}

    # Even a complete-looking adapter in the failed run's folder is never offered.
    import shutil

    shutil.copytree(second.adapter_dir, first.adapter_dir)
    assert first.has_adapter()
    assert [r.id for r in jobs.comparable_runs()] == [second.id]
    poll(lambda: not locks.worker_running(), what="the worker to exit on an empty queue")


@pytest.mark.slow
def test_cancel_then_resume_survives_a_dead_worker(real_jobs):
    run = jobs.launch(tiny_config(real_jobs, steps=120, name="cancel-me"))
    poll(lambda: _at_step(run, 3), what="step 3")

    # The worker dies; the job keeps training. The next listing starts a new worker, which
    # waits for the orphaned job instead of starting another.
    old_worker = locks.worker_pid()
    process.send(old_worker, signal.SIGKILL)
    poll(lambda: not locks.worker_running(), what="the worker lock to be free")
    waiting = jobs.launch(tiny_config(real_jobs, steps=2, name="waits"))
    poll(lambda: locks.worker_pid() not in (None, old_worker), what="a new worker")
    assert _state(run.id) == "running" and _state(waiting.id) == "queued"
    assert jobs.cancel(waiting.id)["state"] == "cancelled"

    status = jobs.cancel(run.id, wait_s=DEADLINE_S)
    assert status["state"] == "cancelled", status.get("error")
    assert "cancelled at step" in run.log_tail(40)
    assert jobs.has_checkpoint(run) and not run.has_adapter()
    stopped_at = run.metrics()[-1]["step"]
    assert 3 <= stopped_at < 120
    assert run.id not in [r.id for r in jobs.comparable_runs()]

    jobs.resume(run.id)
    done = poll(lambda: (s := jobs.job_status(run.id))["state"] not in jobs.ACTIVE and s, what="the resumed run")
    assert done["state"] == "finished", done.get("error")
    assert run.has_adapter() and [r.id for r in jobs.comparable_runs()] == [run.id]
    assert [r["step"] for r in run.metrics()] == list(range(1, 121))  # no gap, no repeat
    assert "resuming decoupled run" in run.log_tail(200)
