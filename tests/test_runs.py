"""backend.runs.Run as the one reader and writer of state.json: its transitions and the
"complete run" test."""

from __future__ import annotations

import json

import pytest

from backend.errors import RunError
from backend.events import Event, EventLog, read_events
from backend.jobs import queue
from backend.runs import RunConfig, create_run


def _adapter(run) -> None:
    run.adapter_dir.mkdir()
    (run.adapter_dir / "adapter_config.json").write_text("{}")
    (run.adapter_dir / "adapter_model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")


def test_a_run_goes_queued_running_finished_and_nowhere_else(tmp_path):
    run = create_run(RunConfig(steps=10), root=tmp_path)
    assert run.state() == {"state": "unknown"}
    with pytest.raises(RunError, match="cannot become finished"):
        run.mark_finished()  # never trained
    run.mark_queued()
    with pytest.raises(RunError, match="cannot become finished"):
        run.mark_finished()
    run.mark_running(pid=123, worker=7)
    run.beat({"step": 3, "steps": 10, "loss": 1.5})
    state = run.state()
    assert (state["state"], state["pid"], state["worker"], state["progress"]["step"]) == ("running", 123, 7, 3)
    run.mark_failed("out of memory")
    assert run.state()["error"] == "out of memory" and run.state()["finished"]
    run.mark_queued(resume=True, attempt=2)
    assert run.state()["resume"] is True and "error" not in run.state()
    run.mark_running(pid=124)
    assert "progress" not in run.state() and "finished" not in run.state()  # the last attempt's are gone
    _adapter(run)
    assert not run.is_complete()  # an adapter is there, but the run still trains
    run.mark_finished(summary={"steps": 10})
    assert run.is_complete()
    for move in (run.mark_queued, run.mark_cancelled, lambda: run.mark_failed("x"), lambda: run.beat({})):
        with pytest.raises(RunError, match="is finished"):
            move()
    assert run.state()["state"] == "finished"


def test_a_finished_run_without_adapter_or_with_a_damaged_file_is_not_complete(tmp_path):
    run = create_run(RunConfig(steps=10), root=tmp_path)
    run.mark_running()
    run.mark_finished()
    assert not run.is_complete()  # no adapter
    _adapter(run)
    assert run.is_complete()
    run.eval_path.write_text("[1]", encoding="utf-8")
    assert not run.is_complete()


def test_state_json_has_one_reader_with_one_fallback(tmp_path):
    run = create_run(RunConfig(steps=10), root=tmp_path)
    assert run.state() == {"state": "unknown"} and queue.state_of(run) == {"state": "unknown"}
    _adapter(run)
    assert run.state() == {"state": "finished"} == queue.state_of(run)
    run.state_path.write_text("[1, 2]", encoding="utf-8")
    state = run.state()
    assert state["state"] == "corrupt" and "holds a list" in state["error"]
    assert queue._read_state(run) == ({"state": "corrupt"}, state["error"])
    run.mark_running()  # a damaged state.json is replaced, not carried along
    assert json.loads(run.state_path.read_text())["state"] == "running"


def test_events_reach_subscribers_and_the_file_keeps_the_ones_asked(tmp_path):
    seen: list[Event] = []
    log = EventLog(tmp_path / "events.jsonl", [seen.append])
    log.emit(Event("train", step=5, total=10, run="r1", method="decoupled", data={"loss": 1.0}), keep=False)
    log.emit(Event("train", step=10, total=10, run="r1", method="decoupled", state="cancelled"))
    assert [e.step for e in seen] == [5, 10] and seen[0].fraction == 0.5
    kept = read_events(tmp_path / "events.jsonl")
    assert kept == [seen[1]]
