"""The work directory of a ``beamwright bench`` run: generated data and every run's outputs.

Benches write gigabytes (1M-row inputs, each case's outputs), so a directory the bench made
itself is removed when the bench ends well; one the user named (``--workdir``) is theirs and
kept, and after a failure the bench's own is kept too, so the user can look at what the
failing run left. Either way a kept directory's path is printed (on stderr: ``--json`` keeps
stdout for the report).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from types import TracebackType


class BenchWorkdir:
    """``with BenchWorkdir(args.workdir, "beamwright-bench-") as work: ...`` gives ``work.path``;
    set ``work.failed = True`` when the bench failed without raising (a case or side that
    reported an error) so the directory is kept for inspection."""

    def __init__(self, given: str | Path | None, prefix: str) -> None:
        self.given = given is not None
        self.path = Path(given) if given is not None else Path(tempfile.mkdtemp(prefix=prefix))
        self.path.mkdir(parents=True, exist_ok=True)
        self.failed = False

    def __enter__(self) -> BenchWorkdir:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.given:
            print(f"work directory kept (--workdir): {self.path}", file=sys.stderr)
        elif exc_type is not None or self.failed:
            print(f"work directory kept for inspection: {self.path}", file=sys.stderr)
        else:
            shutil.rmtree(self.path, ignore_errors=True)
