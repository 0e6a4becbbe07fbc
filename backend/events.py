"""Progress as data: what a long job (an experiment, the demo build) reports while it runs.

A stage says where it is with an `Event` (stage, step of total, message, state), never with
text another module has to parse. Events go to the subscribers given when the job starts
(the demo build turns them into its progress bar) and to a JSON-lines file beside the
job's text log, so that a page or a later process can read the same progress back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from backend.runs import append_jsonl, read_jsonl


@dataclass(frozen=True)
class Event:
    """One report of progress. `step`/`total` count within the stage when it has steps
    (pretraining, training); `run` and `method` name the run a training event is about;
    `data` holds its figures (loss, penalty, overlap, eta_s). `state` is running, or how the
    job ended: finished, failed or cancelled."""

    stage: str
    step: int | None = None
    total: int | None = None
    message: str = ""
    state: str = "running"
    run: str | None = None
    method: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    @property
    def fraction(self) -> float | None:
        """How far into its stage, from step/total; None for a stage without steps."""
        if self.step is None or not self.total:
            return None
        return min(1.0, max(0.0, self.step / self.total))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


Subscriber = Callable[[Event], None]


class EventLog:
    """Hands every event to the subscribers and appends the ones worth keeping to `path`."""

    def __init__(self, path: Path | None, subscribers: Iterable[Subscriber] = ()) -> None:
        self.path = path
        self.subscribers: list[Subscriber] = list(subscribers)

    def emit(self, event: Event, keep: bool = True) -> None:
        """`keep=False` for the many per-step events a subscriber wants but the file need not hold."""
        if keep and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            append_jsonl(self.path, event.to_dict())
        for subscriber in self.subscribers:
            subscriber(event)


def read_events(path: Path) -> list[Event]:
    """The events in a JSON-lines file; lines that are not events are skipped."""
    out = []
    for record in read_jsonl(path):
        try:
            out.append(Event.from_dict(record))
        except TypeError:
            continue
    return out
