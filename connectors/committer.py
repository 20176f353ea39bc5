"""Output committers: a sink owns its output, stages it, and publishes it only on success.

Modelled on Hadoop/Spark output committers. A file sink owns its directory and a report sink
owns its one file; ownership is written down in a manifest beside the output
(``_beamwright_manifest.json`` in a sink's directory, ``.<report>.beamwright.json`` next to a
report) naming the pipeline, the sink, the run that published and the files it published.

The life of one write:

1. **claim** (driver, before the run): take the directory's lock (local paths), finish or
   clean up whatever an earlier crashed run left (see *recovery*), then check that the sink
   may write here: ``overwrite`` refuses a directory holding files its manifest does not list
   (unless ``force: true``, which writes beside them and still never deletes them),
   ``error_if_exists`` refuses any file at all.
2. **stage** (workers, in the pipeline): bundles write their files into a staging directory
   ``.beamwright-tmp-<run>-<write>/`` inside the output directory, and one finalizing step
   writes the staging listing ``_staged.json`` (file, rows, bytes).
3. **publish** (driver, after the run's checks passed): write a *journal* (the new manifest,
   the renames and the deletions still to do) with one atomic rename: that rename is the
   commit point. Then rename the staged files to their final names, delete the files of the
   previous manifest that the new one does not list (``overwrite`` only), and replace the
   manifest by the journal. Only files listed in the sink's own previous manifest are ever
   deleted.
4. **abort** (driver, when the run failed): remove the staging directory; the previous output
   is untouched. Dead letters are the exception (users need them to see why a run failed):
   see :meth:`OutputCommitter.abort`.

*Recovery*: a run killed before its journal was written left only a staging directory, which
the next claim removes (the lock proves no live run is using it). A run killed after the
journal was written is rolled forward by the next claim: every rename and deletion in the
journal is idempotent. So after a crash at any point the directory holds either the previous
publication or the new one, whole, once the next run (or ``beamwright``'s next claim) starts.

Remote paths (``gs://``, ``s3://``) use Beam's FileSystems, where a rename is a copy and a
delete and there is no lock: concurrent runs against one remote directory are not detected,
and a crash during publish is still rolled forward from the journal.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import os
import posixpath
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from connectors.errors import BeamwrightError
from connectors.failpoints import failpoint
from connectors.files.base import is_remote

MANIFEST = "_beamwright_manifest.json"
JOURNAL = "_beamwright_manifest.json.pending"
LOCK = ".beamwright.lock"
STAGING_PREFIX = ".beamwright-tmp-"
FAILED_PREFIX = ".beamwright-failed-"
STAGED_LISTING = "_staged.json"
LEASE = ".beamwright-lease.json"
_CONTROL = {MANIFEST, JOURNAL, LOCK, LEASE}
_RUN_AND_WRITE = r"[0-9a-fA-F-]+-[0-9a-f]+"  # <run id>-<write id> ending a staging dir's name


class OutputConflict(BeamwrightError):
    """A sink may not write where it was told to: the message says why and what to do."""

    def __init__(self, where: str, problem: str, hint: str) -> None:
        super().__init__(problem, where=where, hint=hint)


# --------------------------------------------------------------------------- file system


def _join(*parts: str) -> str:
    return posixpath.join(*parts) if is_remote(parts[0]) else os.path.join(*parts)


def _exists(path: str) -> bool:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.exists(path)
    return os.path.lexists(path)


def _read_text(path: str) -> str | None:
    if not _exists(path):
        return None
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(path) as f:
            return f.read().decode("utf-8")
    with open(path, encoding="utf-8") as f:
        return f.read()


def _write_atomic(path: str, text: str) -> None:
    """Write ``path`` whole or not at all (temp file, fsync, rename, fsync the directory)."""
    data = text.encode("utf-8")
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.create(path) as f:  # object stores publish an object whole
            f.write(data)
        return
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    _fsync_dir(os.path.dirname(path) or ".")


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rename(source: str, target: str) -> None:
    """Move ``source`` to ``target``, replacing it (atomic on a local file system)."""
    if is_remote(source):
        from apache_beam.io.filesystems import FileSystems

        if FileSystems.exists(target):
            FileSystems.delete([target])
        FileSystems.rename([source], [target])
        return
    os.replace(source, target)


def _delete(path: str) -> None:
    if not _exists(path):
        return
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        FileSystems.delete([path])
    elif os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def _entries(directory: str) -> list[str]:
    """Names directly inside ``directory`` (files and sub-directories)."""
    if is_remote(directory):
        from apache_beam.io.filesystems import FileSystems

        prefix = directory.rstrip("/") + "/"
        try:
            results = FileSystems.match([prefix + "*"])
        except Exception:  # nothing there yet
            return []
        names = {m.path[len(prefix) :].split("/")[0] for r in results for m in r.metadata_list}
        return sorted(n for n in names if n)
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []


def _size(path: str) -> int:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        return sum(m.size_in_bytes for r in FileSystems.match([path]) for m in r.metadata_list)
    return os.path.getsize(path)


def make_dirs(path: str) -> None:
    """Create ``path`` (and parents) if missing, locally or through Beam's FileSystems (a
    no-op on object stores, which have no directories); losing a race with another worker
    that created it is fine."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)
        return
    from apache_beam.io.filesystems import FileSystems

    if not FileSystems.exists(path):
        try:
            FileSystems.mkdirs(path)
        except OSError:
            if not FileSystems.exists(path):
                raise


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


# --------------------------------------------------------------------------- manifests


@dataclass
class Manifest:
    """Who owns an output and which files it published there."""

    pipeline: str
    sink: str
    run_id: str
    files: list[str] = field(default_factory=list)  # names inside the directory
    published_at: str = ""
    write_id: str = ""  # which write of the run published (a --follow run writes once a cycle)
    sha256: dict[str, str] = field(default_factory=dict)  # reports: content checksums

    def owned_by(self, pipeline: str, sink: str) -> bool:
        return (self.pipeline, self.sink) == (pipeline, sink)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2) + "\n"

    @classmethod
    def parse(cls, text: str, where: str) -> Manifest:
        try:
            data = json.loads(text)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError) as exc:
            raise OutputConflict(
                where,
                f"the ownership manifest is unreadable ({exc})",
                "restore it, or move the directory's files away",
            ) from None


def read_manifest(path: str) -> Manifest | None:
    text = _read_text(path)
    return None if text is None else Manifest.parse(text, path)


# --------------------------------------------------------------------------- the lock


class DirectoryLock:
    """An exclusive ``flock`` on a lock file in the output directory, held by the driver.

    Held from claim to publish/abort, so a second run writing the same directory fails at
    once instead of interleaving with the first, and a claim may safely remove staging
    directories: no live run can own them. Remote directories cannot be locked (no-op).

    A claim that made the directory (and its missing parents) removes them again when it is
    released with nothing but the lock file in it (a failed first run, a refused one), so a
    run that wrote nothing leaves nothing; the removal happens while the lock is still held,
    so a run opening the lock meanwhile finds it taken.
    """

    def __init__(self, directory: str, name: str, where: str) -> None:
        self._directory = directory
        self._name = name
        self._where = where
        self._fd: int | None = None
        self._made: str | None = None  # the outermost folder acquire() created

    def __getstate__(self) -> dict[str, Any]:
        """A copy (pickled into a pipeline) never holds the lock: closing its descriptor
        number would close the driver's, in the driver's process (the local runner)."""
        return {**self.__dict__, "_fd": None}

    def acquire(self) -> None:
        if is_remote(self._directory) or self._fd is not None:
            return
        import fcntl

        made = None
        folder = os.path.abspath(self._directory)
        while not os.path.exists(folder):
            made, folder = folder, os.path.dirname(folder)
        make_dirs(self._directory)
        fd = os.open(os.path.join(self._directory, self._name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputConflict(
                self._where,
                f"another run is writing to {self._directory} right now",
                "wait for it to finish, or give this run another output path",
            ) from None
        self._fd, self._made = fd, made

    def release(self) -> None:
        if self._fd is not None:
            self._remove_what_acquire_made()
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def _remove_what_acquire_made(self) -> None:
        """The folders acquire() made, if they hold nothing but the lock file (see above)."""
        if self._made is None:
            return
        folder = os.path.abspath(self._directory)
        try:
            if os.listdir(folder) != [self._name]:
                return
            os.unlink(os.path.join(folder, self._name))
            while True:
                os.rmdir(folder)
                if folder == self._made:
                    break
                folder = os.path.dirname(folder)
        except OSError:
            pass  # not empty (another writer, a kept dead letter): it stays


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class OutputTarget:
    """A sink's output as plain, picklable data: where, who, how, and this write's names.

    ``name`` is None for a directory sink (it owns the whole directory) and the file name for
    a report sink (it owns that one file in a directory it shares).
    """

    directory: str
    pipeline: str
    sink: str
    mode: str  # overwrite | append | error_if_exists
    run_id: str
    write_id: str
    extension: str = ""
    name: str | None = None
    force: bool = False
    where: str = ""  # the spec path, for messages
    stem: str | None = None  # names files <stem>-part-...; streaming panes (connectors.panes)

    @property
    def staging_dir(self) -> str:
        return _join(self.directory, f"{self._staging_stem}{self.run_id}-{self.write_id}")

    @property
    def _staging_stem(self) -> str:
        return STAGING_PREFIX if self.name is None else f"{STAGING_PREFIX}{self.name}-"

    def owns_staging(self, entry: str) -> bool:
        """Whether ``entry`` (a name in the directory) is staging of this sink's writes. A
        directory sink owns every staging directory in its directory; a report sink only its
        own, since reports may share a directory."""
        if self.name is None:
            return entry.startswith(STAGING_PREFIX)
        return re.fullmatch(re.escape(self._staging_stem) + _RUN_AND_WRITE, entry) is not None

    @property
    def lock_name(self) -> str:
        return LOCK if self.name is None else f".{self.name}.beamwright.lock"

    @property
    def manifest_path(self) -> str:
        if self.name is None:
            return _join(self.directory, MANIFEST)
        return _join(self.directory, f".{self.name}.beamwright.json")

    @property
    def journal_path(self) -> str:
        return self.manifest_path + ".pending"

    @property
    def lease_path(self) -> str:
        """Where a detached job records that it is writing here (see :meth:`OutputCommitter.lease`)."""
        return _join(self.directory, LEASE if self.name is None else f".{self.name}{LEASE}")

    def final_names(self, count: int) -> list[str]:
        if self.name is not None:
            return [self.name]
        if self.stem is not None:
            stem = f"{self.stem}-part"
        else:
            stem = "part" if self.mode != "append" else f"part-{self.write_id}"
        return [f"{stem}-{i:05d}-of-{count:05d}{self.extension}" for i in range(count)]


def write_staged_listing(
    target: OutputTarget, staged: list[tuple[str, int]], finals: list[str] | None = None
) -> dict[str, Any]:
    """Record what a write staged (called once, in the pipeline, after every bundle wrote).

    ``staged`` holds (staging file path, rows); ``finals`` their final names when the writer
    chose them (shards, windows: ``<window>/part-00003-of-00025``), else the target's
    ``part-...`` names in staging order. Returns the listing: final names, rows, bytes.
    """
    if finals is None:
        staged = sorted(staged)
        finals = target.final_names(len(staged))
    files = [
        {"staged": os.path.basename(path), "final": final, "rows": rows, "bytes": _size(path)}
        for (path, rows), final in zip(staged, finals, strict=True)
    ]
    listing = {"run_id": target.run_id, "write_id": target.write_id, "files": files}
    make_dirs(target.staging_dir)
    _write_atomic(_join(target.staging_dir, STAGED_LISTING), json.dumps(listing) + "\n")
    return listing


# --------------------------------------------------------------------------- the committer


class OutputCommitter:
    """Claims, publishes or aborts one sink's output (driver side; see the module docstring)."""

    def __init__(self, target: OutputTarget) -> None:
        self.target = target
        self._lock = DirectoryLock(target.directory, target.lock_name, target.where or target.sink)

    # -- claim ---------------------------------------------------------------------------
    def check(self) -> None:
        """Whether this sink may write its output, reading only (``validate --deep`` and the
        builder call it). A journaled publish a crash left unfinished counts as done."""
        self._check_ownership()

    def claim(self) -> None:
        """Lock, recover from earlier crashes, and check ownership. Raises OutputConflict."""
        self._lock.acquire()
        try:
            self._check_lease()
            self.recover()
            self._check_ownership()
        except BaseException:
            self._lock.release()
            raise

    def recover(self) -> None:
        """Roll a journaled publish forward, then remove staging left by dead runs."""
        t = self.target
        journal = _read_text(t.journal_path)
        if journal is not None:
            _apply_journal(t, json.loads(journal))
        if is_remote(t.directory):
            return  # without a lock a staging directory may belong to a live run
        current = posixpath.basename(t.staging_dir)  # this write's own, when claimed late
        for entry in _entries(t.directory):
            if t.owns_staging(entry) and entry != current:
                _delete(_join(t.directory, entry))

    def _check_ownership(self) -> None:
        t = self.target
        journal = _read_text(t.journal_path)
        if journal is not None:
            manifest: Manifest | None = Manifest(**json.loads(journal)["manifest"])
        else:
            manifest = read_manifest(t.manifest_path)
        mine = manifest is not None and manifest.owned_by(t.pipeline, t.sink)
        if manifest is not None and not mine and not t.force:
            raise OutputConflict(
                t.where,
                f"{t.directory} is owned by sink '{manifest.sink}' of pipeline "
                f"'{manifest.pipeline}' (its {posixpath.basename(t.manifest_path)})",
                "give this sink its own path, or set force: true to take it over "
                "(files it does not own are kept, never deleted)",
            )
        # a window's files are <window>/part-...: the sink owns the directories they are in
        owned = {f.split("/")[0] for f in manifest.files} if mine and manifest else set()
        if t.name is not None:
            self._check_report(manifest if mine else None)
            return
        present = [e for e in _entries(t.directory) if not _is_control(e)]
        foreign = [e for e in present if e not in owned]
        if t.mode == "error_if_exists" and present:
            raise OutputConflict(
                t.where,
                f"{t.directory} already holds {len(present)} file(s) ({_some(present)})",
                "use mode: overwrite or append, or another path",
            )
        if t.mode == "overwrite" and foreign and not t.force:
            raise OutputConflict(
                t.where,
                f"{t.directory} holds {len(foreign)} file(s) this sink did not write "
                f"({_some(foreign)}); overwrite replaces only files listed in its manifest",
                "move them away, choose an empty directory, or set force: true to write "
                "beside them (they are kept)",
            )

    def _check_report(self, manifest: Manifest | None) -> None:
        t = self.target
        path = _join(t.directory, t.name or "")
        if not _exists(path):
            return
        if t.mode == "error_if_exists":
            raise OutputConflict(t.where, f"{path} already exists", "use mode: overwrite")
        if manifest is None or manifest.sha256.get(t.name or "") != _sha256(path):
            raise OutputConflict(
                t.where,
                f"{path} exists and was not written by this sink (or was changed since)",
                "move it away or choose another report path",
            )

    # -- publish -------------------------------------------------------------------------
    def publish(self) -> list[str]:
        """Make the staged files the sink's output; returns their final paths."""
        t = self.target
        try:
            listing_text = _read_text(_join(t.staging_dir, STAGED_LISTING))
            if listing_text is None:
                raise OutputConflict(
                    t.where,
                    f"nothing was staged in {t.staging_dir}",
                    "the pipeline did not finish writing this sink; re-run it",
                )
            files = json.loads(listing_text)["files"]
            previous = read_manifest(t.manifest_path)
            owned = previous.files if previous and previous.owned_by(t.pipeline, t.sink) else []
            finals = [f["final"] for f in files]
            if t.mode == "append":
                kept = [f for f in owned if _exists(_join(t.directory, f)) and f not in finals]
                new_files, deletions = kept + finals, []
            else:
                new_files, deletions = finals, [f for f in owned if f not in finals]
            manifest = Manifest(
                pipeline=t.pipeline,
                sink=t.sink,
                run_id=t.run_id,
                files=new_files,
                published_at=_now(),
                write_id=t.write_id,
            )
            if t.name is not None and files:
                staged = _join(t.staging_dir, files[0]["staged"])
                manifest.sha256 = {t.name: _sha256(staged)}
            journal = {
                "manifest": manifest.__dict__,
                "moves": [[f["staged"], f["final"]] for f in files],
                "delete": deletions,
                "staging": posixpath.basename(t.staging_dir),
            }
            failpoint("publish:before-journal")
            _write_atomic(t.journal_path, json.dumps(journal) + "\n")  # the commit point
            failpoint("publish:journaled")
            _apply_journal(t, journal)
            return [_join(t.directory, f) for f in finals]
        finally:
            self._lock.release()

    def release(self) -> None:
        """Give up the claim without touching anything (a later sink failed to build)."""
        self._lock.release()

    def published_by_this_run(self) -> list[str] | None:
        """The paths this write published, when its manifest says this very write did (the
        pipeline published it, ``run.publish: pipeline``); None otherwise. By write, not by
        run: a ``--follow`` run writes once per cycle under one run id."""
        t = self.target
        manifest = read_manifest(t.manifest_path)
        if (
            manifest is None
            or (manifest.run_id, manifest.write_id) != (t.run_id, t.write_id)
            or not manifest.owned_by(t.pipeline, t.sink)
        ):
            return None
        return [_join(t.directory, f) for f in manifest.files]

    # -- detached jobs -------------------------------------------------------------------
    def lease(self, job: str, hint: str) -> None:
        """Hand the claim to a detached job (``run --detach``): the lock belongs to the driver
        process, which exits, so the claim is written down instead. Until :meth:`end_lease`,
        every claim of this output fails with ``hint`` (how to check on or stop the job), so
        no other run removes the job's staging or publishes over its panes."""
        _write_atomic(self.target.lease_path, json.dumps({"job": job, "hint": hint}) + "\n")
        self._lock.release()

    def _check_lease(self) -> None:
        text = _read_text(self.target.lease_path)
        if text is None:
            return
        try:
            lease = json.loads(text)
        except ValueError:
            lease = {"job": "unknown", "hint": f"remove {self.target.lease_path} if no job runs"}
        raise OutputConflict(
            self.target.where or self.target.sink,
            f"detached job {lease.get('job')} is writing to {self.target.directory}",
            lease.get("hint", ""),
        )

    # -- abort ---------------------------------------------------------------------------
    def abort(self, *, keep: bool = False) -> str | None:
        """Drop this write's staging; the previous output stays as it was.

        With ``keep`` the staged files are kept, renamed ``.beamwright-failed-<run>-<write>``
        in the output directory (never read as output, never removed by later runs), and that
        path is returned so the summary can say where they are.
        """
        t = self.target
        try:
            kept = _join(
                t.directory,
                posixpath.basename(t.staging_dir).replace(STAGING_PREFIX, FAILED_PREFIX, 1),
            )
            if not _exists(t.staging_dir):  # nothing staged, or already kept (by the pipeline)
                return kept if keep and _exists(kept) else None
            if keep:
                _rename(t.staging_dir, kept)
                return kept
            _delete(t.staging_dir)
            return None
        finally:
            self._lock.release()


def end_lease(lease_path: str) -> None:
    """A detached job has ended: its output (``OutputTarget.lease_path``) can be claimed again."""
    _delete(lease_path)


def _apply_journal(target: OutputTarget, journal: dict[str, Any]) -> None:
    """Carry out a journaled publish; every step is idempotent, so a crash mid-way is resumed
    by calling this again."""
    staging = _join(target.directory, journal["staging"])
    made: set[str] = set()
    for staged, final in journal["moves"]:
        source = _join(staging, staged)
        if _exists(source):
            sub = posixpath.dirname(final)  # a window's file: <window>/part-...
            if sub and sub not in made:
                make_dirs(_join(target.directory, sub))
                made.add(sub)
            _rename(source, _join(target.directory, final))
            failpoint("publish:renamed-one")
    for name in journal["delete"]:
        _delete(_join(target.directory, name))
        _remove_if_empty(target.directory, posixpath.dirname(name))
    failpoint("publish:deleted")
    manifest = Manifest(**journal["manifest"])
    _write_atomic(target.manifest_path, manifest.to_json())
    _delete(target.journal_path)
    failpoint("publish:manifest")
    _delete(staging)


def _remove_if_empty(directory: str, sub: str) -> None:
    """Remove the window directory ``sub`` of ``directory`` once overwrite deleted its last
    file: an empty directory left behind would count as a file the sink does not own. Object
    stores have no directories to remove."""
    if not sub or is_remote(directory):
        return
    path = _join(directory, sub)
    if os.path.isdir(path) and not os.listdir(path):
        os.rmdir(path)


def _is_control(entry: str) -> bool:
    return (
        entry in _CONTROL
        or entry.startswith((STAGING_PREFIX, FAILED_PREFIX))
        or fnmatch.fnmatch(entry, f"{MANIFEST}.tmp-*")
        or fnmatch.fnmatch(entry, f"{JOURNAL}.tmp-*")
    )


def _some(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", and {len(names) - limit} more" if len(names) > limit else "")


def _sha256(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(path) as f:
            digest.update(f.read())
    else:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
