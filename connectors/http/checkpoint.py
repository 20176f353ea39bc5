"""The incremental state of an ``http`` source: a high-water mark per endpoint, in a JSON file.

A run asks each endpoint only for records changed after the mark (``?since=<mark>``) and
remembers the greatest value of the incremental field among the records it read. The driver
writes the new marks **after the run's outputs were published** (the way Kafka offsets are
committed), so a run that fails, or whose checks fail, leaves the file as it was and the next
run fetches the same records again: at least once, never a gap.

The file is written whole to a temporary name and renamed over the old one (atomic on POSIX),
so a crash mid-write leaves the old marks. Values are kept as the API is sent them: ISO 8601
UTC text for timestamps (``2026-12-03T10:00:00.123456Z``), integers for numeric marks.

Marks travel from workers to the driver as Beam distributions (``max``), so they work on every
runner whose result reports metrics; a timestamp travels as epoch microseconds.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from connectors.errors import BeamwrightError

VERSION = 1
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


class CheckpointError(BeamwrightError):
    """A checkpoint file that cannot be read (not JSON, another layout)."""


def read_marks(path: str) -> dict[str, Any]:
    """Endpoint URL -> its high-water mark ({} when the file does not exist yet)."""
    file = Path(path)
    if not file.exists():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        marks = data["marks"]
        if not isinstance(marks, dict):
            raise TypeError("marks is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"cannot read the checkpoint: {exc}",
            where=path,
            hint="fix or delete it (deleting it makes the next run fetch everything)",
        ) from None
    return {url: entry["since"] for url, entry in marks.items() if isinstance(entry, dict)}


def write_marks(path: str, marks: dict[str, Any], *, run_id: str) -> None:
    """Merge ``marks`` (endpoint URL -> mark) into the file at ``path``, atomically."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat()
    entries: dict[str, Any] = {}
    if file.exists():
        try:
            entries = json.loads(file.read_text(encoding="utf-8")).get("marks", {})
        except ValueError:
            entries = {}
    for url, mark in marks.items():
        entries[url] = {"since": mark, "run_id": run_id, "updated_at": now}
    text = json.dumps({"version": VERSION, "marks": entries}, indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_metric(value: Any, kind: str) -> int | None:
    """A record's incremental value as the integer a Beam distribution carries (epoch
    microseconds for ``timestamp``), or None when it has none."""
    if value is None:
        return None
    if kind == "int64":
        return int(value)
    if isinstance(value, _dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)
    else:
        raise TypeError(f"a timestamp mark needs a datetime, got {type(value).__name__}")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_metric(value: int, kind: str) -> Any:
    """The mark as stored and sent: ISO 8601 UTC text (``...Z``) or an integer."""
    if kind == "int64":
        return int(value)
    moment = _EPOCH + _dt.timedelta(microseconds=value)
    return moment.isoformat().replace("+00:00", "Z")
