"""The one error base of beamwright, and the one way to suggest a fix.

Every error a user can act on is a :class:`BeamwrightError`: it names *where* (a spec path, a
file, a secret), *what* is wrong, and a *hint*. Its class says what the CLI's exit code is, so
nothing guesses from messages. It lives in ``connectors``, the lowest layer, so that every
package can raise it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_RUN_FAILED = 1
EXIT_INVALID = 2


class BeamwrightError(Exception):
    """An error with a place, a problem and a hint; ``exit_code`` tells the CLI what it means.

    ``exit_code`` 2 (the default) means the input was wrong and nothing ran; subclasses for
    failures while running set 1.
    """

    exit_code = EXIT_INVALID

    def __init__(self, where: str, problem: str, hint: str = "") -> None:
        super().__init__(where, problem, hint)  # picklable: Beam ships errors between processes
        self.where, self.problem, self.hint = where, problem, hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.problem}" if self.where else self.problem
        return f"{text}; {self.hint}" if self.hint else text


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The most similar of ``choices`` to ``word``, for "did you mean" hints."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return match[0] if match else None


def did_you_mean(word: str, choices: Iterable[str], *, listing: str = "valid") -> str:
    """The hint for an unknown name: ``did you mean 'x'?``, or the valid names."""
    names = sorted(choices)
    guess = closest(word, names)
    return f"did you mean '{guess}'?" if guess else f"{listing}: {', '.join(names)}"
