"""The one error base of beamwright, and the one way to suggest a fix.

Every error a user can act on is a :class:`BeamwrightError`: it can name *where* (a spec path,
a file, a secret), says *what* is wrong, and may give a *hint*. Its class says what the CLI's
exit code is (``exit_code``), so nothing guesses from messages or class names. It lives in
``connectors``, the lowest layer, so that every package can raise it; subclasses keep the
builtin base they always had (``ValueError``, ``RuntimeError``, ...) for callers that catch
those.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

EXIT_OK = 0
EXIT_RUN_FAILED = 1  # the input was fine, running it failed (data, a server, a threshold)
EXIT_INVALID = 2  # the input was wrong: nothing ran


class BeamwrightError(Exception):
    """An error with a problem, and where it is and a hint when known.

    ``exit_code`` is :data:`EXIT_INVALID` unless a subclass says the failure happened while
    running (:data:`EXIT_RUN_FAILED`).
    """

    exit_code = EXIT_INVALID

    def __init__(self, problem: str = "", *, where: str = "", hint: str = "") -> None:
        super().__init__(problem)
        self.problem, self.where, self.hint = problem, where, hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.problem}" if self.where else self.problem
        return f"{text}; {self.hint}" if self.hint else text

    def __reduce__(self) -> tuple[Any, ...]:
        # Beam ships errors between processes: rebuild any subclass whatever its __init__.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type, args: tuple[Any, ...], state: dict[str, Any]) -> BeamwrightError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class RunError(BeamwrightError):
    """Something failed while running (a server, the data, a threshold): exit code 1."""

    exit_code = EXIT_RUN_FAILED


def error_classes() -> list[type[BeamwrightError]]:
    """Every BeamwrightError class imported so far (to recognise them in runner messages,
    where remote workers hand errors back as text)."""
    found: list[type[BeamwrightError]] = []
    todo: list[type[BeamwrightError]] = [BeamwrightError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def close_matches(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``choices`` similar to ``word``, most similar first."""
    return difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The most similar of ``choices`` to ``word``, for "did you mean" hints."""
    match = close_matches(word, choices, n=1)
    return match[0] if match else None


def did_you_mean(word: str, choices: Iterable[str], *, listing: str = "valid") -> str:
    """The hint for an unknown name: ``did you mean 'x'?``, or the valid names."""
    names = sorted(choices)
    guess = closest(word, names)
    return f"did you mean '{guess}'?" if guess else f"{listing}: {', '.join(names)}"


def suggest(name: str, candidates: Iterable[str], label: str, *, always: bool) -> str | None:
    """'did you mean ...?' naming every candidate about as close as the best one (an
    expression's unknown function or field may have two equally likely fixes); the full
    list too, as ``label: a, b, ...``, when ``always`` or when nothing is close."""
    names = sorted(set(candidates))
    scored = sorted((-difflib.SequenceMatcher(None, name, c).ratio(), c) for c in names)
    best = -scored[0][0] if scored else 0.0
    close = [c for score, c in scored[:3] if -score >= max(0.7, best - 0.05)]
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    if names and (always or not close):
        listed = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        hint = f"{hint} {label}: {listed}".strip()
    return hint or None
