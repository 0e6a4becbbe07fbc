"""The project's own errors.

Everything a user can get wrong (a corpus, a variety name, a path, a limit) raises a
subclass of `UserError` with a one-line message; the CLI prints it and exits 2, the pages
show it with `st.error`. Anything else is a bug and may show a traceback in a terminal,
never in the browser.
"""


class UserError(Exception):
    """A problem the user can fix; its message is shown as is."""


class UnknownVarietyError(UserError, KeyError):
    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0]) if self.args else ""


class CorpusError(UserError):
    """Missing, malformed or misaligned corpus input; the message names file and line."""


class ModelLoadError(UserError):
    """A base model or adapter could not be loaded (offline, wrong id, missing files)."""


class RunError(UserError):
    """A run folder is missing, incomplete or in a state that forbids the action."""


class JobError(UserError):
    """A background job cannot be queued, cancelled or resumed."""


class LimitError(UserError):
    """An input is over a configured cap (text length, steps, dataset size, queue)."""


class PathError(UserError):
    """A path typed by a user resolves outside the configured roots."""
