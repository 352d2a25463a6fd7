"""One exception root for everything mlsd reports to a user.

Every error carries a short headline and a message in the form
"what is wrong — what was given — how to fix it". The CLI prints them without a
traceback and exits with the error's ``exit_code``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: object, choices: Iterable[object], n: int = 1, cutoff: float = 0.6) -> str:
    """`` — did you mean 'x'?`` (or ``'x' or 'y'`` when ``n`` > 1) naming the choices close
    to ``word``; empty when none is. Every "unknown name" message ends with it."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=cutoff)
    return f" — did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class MlsdError(Exception):
    """Base class of every error mlsd raises on purpose.

    ``headline`` is one line; ``message`` may span several; ``hint`` says how to fix it.
    """

    headline = "mlsd error"
    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None, headline: str | None = None):
        self.message = message
        self.hint = hint
        if headline is not None:
            self.headline = headline
        super().__init__(self.render())

    def render(self) -> str:
        """The full text a user sees: headline, message and how to fix it."""
        text = f"{self.headline}: {self.message}"
        if self.hint:
            text += f"\n  fix: {self.hint}"
        return text


class SpecError(MlsdError):
    """``system.yaml`` is malformed or names something that does not exist.

    ``problems`` lists each finding as ``{file, line, key, problem, hint}`` so callers
    (and ``--json``) can show them one by one.
    """

    headline = "invalid system spec"

    def __init__(
        self, message: str, *, hint: str | None = None, problems: list[dict] | None = None
    ):
        self.problems = problems or []
        super().__init__(message, hint=hint)


class DataError(MlsdError):
    """A data source cannot be read or does not fit what the spec declares."""

    headline = "data error"


class FeatureError(MlsdError):
    """A featurizer was used wrongly (not fitted, missing input column, bad saved state)."""

    headline = "feature error"


class WorkspaceError(MlsdError):
    """The workspace folder cannot be created or holds something inconsistent."""

    headline = "workspace error"
