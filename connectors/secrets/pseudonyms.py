"""Pseudonymisation keys from the credential service: one key version per run, recorded, and
rotations that keep pseudonyms joinable.

A pseudonym is ``HMAC-SHA256(key, value)`` (the ``mask`` step's ``pseudonymize``), so a new key
version changes every pseudonym: outputs written before a rotation no longer join with those
written after it. Three things follow:

* **A run pins its key version.** When the graph is built, a ``{store: ..., name: ...}`` key
  at a stage (``current``) is replaced by the version id the stage points at (read from the
  store's stage pointers, no value), so every worker of the run uses that version even if a
  rotation lands mid-run, and the version is what lineage records
  (:class:`KeyPins`, one per built graph, handed to the run's lineage with the graph; the
  ``beamwright_pseudonymization`` dataset facet).
* **A pseudonymisation key is not rotated unless its policy says how**
  (:class:`~connectors.secrets.policy.RotationPolicy` ``pseudonymization: true`` with
  ``on_rotation``): ``fixed_version`` keeps every older version enabled, for pipelines that pin
  a version in their spec (``ref: <version id>``), and ``rekey`` writes a mapping table.
* **The rekey map is computed from the originals, at rotation time.** An HMAC cannot be
  inverted, and the old outputs hold only old pseudonyms, so the only honest way to map old
  to new is to pseudonymise the *original* values again under both keys. The rotation reads
  the originals from the files the policy names (the inputs of the runs whose outputs must
  keep joining), and before the new version is promoted writes ``old_pseudonym,new_pseudonym``
  for each distinct value (:func:`write_rekey_map`); a failed map rolls the rotation back.
  Values absent from those files get no row. The map holds pseudonyms only, never originals;
  since it links old and new pseudonyms of one person, treat it like the outputs themselves.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.secrets import EnvSecret, FileSecret, Secret, SecretError, SecretRef
from connectors.secrets.model import LATEST, STAGES
from connectors.secrets.refs import StoredSecret

REKEY, FIXED_VERSION = "rekey", "fixed_version"
ON_ROTATION = (REKEY, FIXED_VERSION)


@dataclass(frozen=True)
class KeyUse:
    """Which key a pseudonymised field was made with: a reference (never a value) and the
    store's version id (``None`` for an environment variable or a file, which have none)."""

    step: str
    field: str
    key_ref: str
    key_version: str | None


def key_label(ref: SecretRef) -> str:
    """A printable name of where a key lives: ``<store type>:<name>``, ``env:VAR``, ``file:PATH``."""
    if isinstance(ref, StoredSecret):
        source = ref.source_config
        kinds = [source["type"]] if isinstance(source, Mapping) else [c["type"] for c in source]
        return f"{'+'.join(kinds)}:{ref.name}"
    if isinstance(ref, EnvSecret):
        return f"env:{ref.name}"
    if isinstance(ref, FileSecret):
        return f"file:{ref.path}"
    return type(ref).__name__


@dataclass
class KeyPins:
    """The pseudonymisation keys one graph was built with: one version per key for the whole
    run (every step and audience naming the same key gets the same version), and each use,
    which the run's lineage reports. One per build (``BuildContext``), carried to lineage by
    the built pipeline and a detached job's record, so nothing outlives the run."""

    versions: dict[tuple[str, str], str] = field(default_factory=dict)  # (source, name@ref)
    uses: list[KeyUse] = field(default_factory=list)

    def pin(self, ref: SecretRef, *, step: str, field: str) -> SecretRef:
        """``ref`` pinned to one version for this run, recorded. A stored key at a stage is
        pinned to the version the stage points at now; a version id stays as it is."""
        version = None
        if isinstance(ref, StoredSecret):
            key = (ref.source_json, f"{ref.name}@{ref.ref}")
            if key not in self.versions:
                self.versions[key] = _current_version(ref)
            version = self.versions[key]
            ref = dataclasses.replace(ref, ref=version)
        use = KeyUse(step, field, key_label(ref), version)
        if use not in self.uses:
            self.uses.append(use)
        return ref


def _current_version(ref: StoredSecret) -> str:
    if ref.ref not in (*STAGES, LATEST):
        return ref.ref  # already a version id (fixed_version)
    from connectors.secrets.registry import open_source

    source = open_source(ref.source_config)
    try:
        if ref.ref == "current":
            return str(source.stages(ref.name).current)  # pointers only, no value read
        return source.access(ref.name, ref.ref).version
    finally:
        source.close()


def key_id(version: str) -> str:
    """The ``key_id`` prefix of pseudonyms made with key ``version``: its first 8 characters."""
    return f"{version[:8]}:"


def pseudonym(key: bytes, value: bytes, length: int | None = None, prefix: str = "") -> str:
    """The ``pseudonymize`` strategy's token: ``prefix`` + HMAC-SHA256 hex, cut to ``length``
    characters."""
    return prefix + hmac.new(key, value, hashlib.sha256).hexdigest()[: length or 64]


@dataclass(frozen=True)
class Originals:
    """Where the original values of a pseudonymised field are: files (CSV, JSON lines or
    Parquet, by extension) and the field's name in them."""

    paths: tuple[str, ...]
    field: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Originals:
        paths = data.get("paths") or ([data["path"]] if "path" in data else [])
        if not paths or not data.get("field"):
            raise SecretError("rekey.originals: each entry needs 'path' (or 'paths') and 'field'")
        return cls(tuple(str(p) for p in paths), str(data["field"]))


def _distinct_values(originals: Sequence[Originals]) -> list[bytes]:
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as pa_csv
    from pyarrow import json as pa_json
    from pyarrow import parquet as pq

    readers = {".csv": pa_csv.read_csv, ".jsonl": pa_json.read_json, ".json": pa_json.read_json}
    seen: set[bytes] = set()
    for entry in originals:
        for path in sorted({p for pattern in entry.paths for p in _expand(pattern)}):
            suffix = Path(path).suffix.lower()
            try:
                if suffix == ".parquet":
                    table = pq.read_table(path, columns=[entry.field])
                elif suffix in readers:
                    table = readers[suffix](path)
                else:
                    raise SecretError(
                        f"rekey.originals: {path}: not a .csv, .jsonl or .parquet file"
                    )
            except (OSError, pa.ArrowInvalid) as exc:
                raise SecretError(
                    f"rekey.originals: cannot read {path}: {type(exc).__name__}"
                ) from None
            if entry.field not in table.column_names:
                raise SecretError(f"rekey.originals: {path} has no field {entry.field!r}")
            column = pc.cast(table.column(entry.field), pa.string())
            seen.update(v.encode("utf-8") for v in pc.unique(column).to_pylist() if v is not None)
    return sorted(seen)


def _expand(pattern: str) -> Iterable[str]:
    import glob

    matches = glob.glob(pattern)
    if not matches:
        raise SecretError(f"rekey.originals: no file matches {pattern}")
    return matches


def write_rekey_map(
    originals: Sequence[Originals],
    old: Secret,
    new: Secret,
    path: Path,
    *,
    length: int | None = None,
    prefixes: tuple[str, str] = ("", ""),
) -> int:
    """Write ``old_pseudonym,new_pseudonym`` for every distinct original value to ``path``
    (atomically: a temporary file renamed into place); the number of rows. ``prefixes`` are
    the old and new ``key_id`` prefixes, for specs that use ``key_id``."""
    values = _distinct_values(originals)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    old_key, new_key = old.reveal(), new.reveal()
    with open(partial, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["old_pseudonym", "new_pseudonym"])
        for value in values:
            old_token = pseudonym(old_key, value, length, prefixes[0])
            writer.writerow([old_token, pseudonym(new_key, value, length, prefixes[1])])
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    return len(values)
