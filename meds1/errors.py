"""One error type for everything a user can get wrong: it prints as one line naming file, experiment and key."""
from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """The closest known name, if one is close enough to be a likely typo."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return close[0] if close else None


class MedS1Error(Exception):
    """A user-facing error. ``str(err)`` is one line: ``file: experiment 'x': key 'k': message (did you mean 'y'?)``."""

    def __init__(self, message: str, *, file=None, experiment=None, key=None, choices=None, value=None):
        self.message, self.file, self.experiment, self.key = message, file, experiment, key
        self.suggestion = did_you_mean(value, choices) if (choices is not None and value is not None) else None
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(str(self.file))
        if self.experiment:
            parts.append(f"experiment '{self.experiment}'")
        if self.key:
            parts.append(f"key '{self.key}'")
        text = ": ".join(parts + [self.message])
        if self.suggestion:
            text += f" (did you mean '{self.suggestion}'?)"
        return " ".join(text.split())  # always one line
