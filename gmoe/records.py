"""The results folder of a sweep: its files, its one writer, reading and repairing them.

A results folder holds

- ``results.jsonl``: one JSON record per finished task, appended, flushed and
  fsync'ed as each task finishes (or ``results.jsonl.gz``, an archived copy);
- ``sweep.json``: the resolved configs, their hash and the profile run
  (``"quick": true`` for a quick run);
- ``.lock``: locked (``fcntl.flock``) by the one process that writes the folder, and
  released by the operating system when that process ends, however it ends.

This module is the only one that writes, reads, flattens and repairs these files;
:mod:`gmoe.sweep` decides what goes into a record.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ._json import jsonable as _jsonable

try:  # POSIX; elsewhere a folder is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = [
    "RESULTS_FILE",
    "SWEEP_FILE",
    "LOCK_FILE",
    "ResultsFolder",
    "ResultsFolderError",
    "ResultsMismatchError",
    "ResultsLockedError",
    "ResultsNotWritableError",
    "DamagedResultsError",
    "DuplicateRecordsWarning",
    "RepairReport",
    "read_records",
    "load_results",
    "results_folder",
    "has_results",
    "repair_results",
]

RESULTS_FILE = "results.jsonl"
SWEEP_FILE = "sweep.json"
LOCK_FILE = ".lock"


def results_folder(name: str, quick: bool = False, root="results") -> Path:
    """Where ``gmoe run`` and ``gmoe reproduce`` write a config's results by default:
    ``root/NAME``, or ``root/NAME-quick`` for its ``[quick]`` profile."""
    return Path(root) / (name + ("-quick" if quick else ""))


def has_results(folder) -> bool:
    """Whether ``folder`` holds a results file (``results.jsonl`` or its archived
    ``results.jsonl.gz``)."""
    path = Path(folder) / RESULTS_FILE
    return path.exists() or path.with_name(RESULTS_FILE + ".gz").exists()


class ResultsFolderError(Exception):
    """A results folder that cannot be used as asked; the message says what to do."""


class ResultsMismatchError(ResultsFolderError, ValueError):
    """The results file in an output folder belongs to another config."""


class ResultsLockedError(ResultsFolderError):
    """Another process is writing the results folder."""


class ResultsNotWritableError(ResultsFolderError, PermissionError):
    """The results folder, or a file in it, cannot be written."""


class DamagedResultsError(ResultsFolderError, ValueError):
    """A line of the results file, other than a torn last line, is not a record."""


class EmptyResultsError(ResultsFolderError, ValueError):
    """The results file holds no finished task yet (a sweep stopped before its first
    fit finished)."""


class DuplicateRecordsWarning(UserWarning):
    """The results file holds some task more than once (e.g. two writers at once)."""


def _not_writable(exc: OSError, folder: Path) -> ResultsNotWritableError:
    target = exc.filename or folder
    return ResultsNotWritableError(
        f"cannot write {target}: permission denied; make the results folder and its files "
        "writable, or write to another folder (--out)")


@contextmanager
def _writing(folder: Path):
    """Turn a permission error into one line that names the file and the way out."""
    try:
        yield
    except PermissionError as exc:
        if isinstance(exc, ResultsFolderError):
            raise
        raise _not_writable(exc, folder) from None


def _repair_hint(folder: Path) -> str:
    return (f"`gmoe repair {folder}` keeps every intact task (it backs up the original "
            "first), then run the sweep again to redo the rest")


def _is_record(line: bytes) -> bool:
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(rec, dict) and "task" in rec


def read_records(path, repair: bool = False) -> list[dict]:
    """Every complete record of a results file, in file order (duplicates included).

    A torn last line (a writer killed mid-line) is dropped, and with ``repair`` cut
    off the file so that appends start on a fresh line. A missing file reads as its
    archived ``.gz`` copy, or as no records.

    Raises
    ------
    DamagedResultsError
        A line before the last is not a record; the message says how to recover
        (:func:`repair_results`).
    """
    path = Path(path)
    if not path.exists():
        packed = path.with_name(path.name + ".gz")
        if not packed.exists():
            return []
        import gzip

        # an archived (committed) sweep: read-only, complete lines
        data = gzip.decompress(packed.read_bytes())
        repair = False
    else:
        data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data) and repair:
        with _writing(path.parent), open(path, "r+b") as fh:
            fh.truncate(end)  # cut the torn tail so appends start on a fresh line
            fh.flush()
            os.fsync(fh.fileno())
    records = []
    for lineno, line in enumerate(data[:end].splitlines(), start=1):
        if not line.strip():
            continue
        if not _is_record(line):
            raise DamagedResultsError(f"{path}: line {lineno} is damaged (not a complete "
                                      f"task record); {_repair_hint(path.parent)}")
        records.append(json.loads(line))
    return records


def _unique(records: list[dict], path: Path) -> list[dict]:
    """The first record of each task; warns when there were duplicates."""
    seen: set = set()
    out = []
    for rec in records:
        if rec["task"] not in seen:
            seen.add(rec["task"])
            out.append(rec)
    if len(out) < len(records):
        warnings.warn(f"{path}: {len(records) - len(out)} duplicated task records (kept the "
                      f"first of each; `gmoe repair {path.parent}` removes the others)",
                      DuplicateRecordsWarning, stacklevel=3)
    return out


class ResultsFolder:
    """The one writer of a results folder: a context manager that holds its lock.

    Entering creates the folder and takes an exclusive, non-blocking ``flock`` on
    ``.lock`` (released when the process ends, even by SIGKILL); a second writer gets
    :class:`ResultsLockedError`. Permission problems raise
    :class:`ResultsNotWritableError`, with one line that names the file.

    Examples
    --------
    >>> import tempfile
    >>> with ResultsFolder(tempfile.mkdtemp()) as folder:
    ...     done = folder.start({"sweep_hash": "abc"}, {"h"}, resume=True)
    ...     folder.append({"task": "0:0:0", "config_hash": "h", "status": "ok"})
    >>> sorted(done)
    []
    """

    def __init__(self, path):
        self.path = Path(path)
        self.results_path = self.path / RESULTS_FILE
        self.meta_path = self.path / SWEEP_FILE
        self._lock_fd: int | None = None
        self._fh = None

    def __enter__(self) -> ResultsFolder:
        with _writing(self.path):
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                raise ResultsFolderError(f"{self.path} exists and is not a folder") from None
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._lock(fd)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd
        return self

    def _lock(self, fd: int) -> None:
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise ResultsLockedError(
                f"{self.path} is being written by another gmoe run ({holder}); wait for it "
                "to finish, or write to another folder (--out)") from None
        except OSError as exc:  # a file system without locks: go on, unguarded
            warnings.warn(f"cannot lock {self.path} ({exc.strerror}); make sure no other "
                          "gmoe run writes to it", RuntimeWarning, stacklevel=3)
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)

    def __exit__(self, *exc_info) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def start(self, meta: dict, config_hashes: set[str], resume: bool) -> set[str]:
        """Write ``sweep.json`` and return the task keys already recorded.

        With ``resume`` the folder must hold results of the same configs
        (:class:`ResultsMismatchError` otherwise) and a torn last line is cut off;
        without it an existing results file is removed.
        """
        if self._lock_fd is None:
            raise RuntimeError("ResultsFolder.start needs the folder entered (with ...)")
        done: set[str] = set()
        with _writing(self.path):
            if resume and self.results_path.exists():
                old = self._read_meta()
                if old.get("sweep_hash") not in (None, meta.get("sweep_hash")):
                    raise ResultsMismatchError(
                        f"{self.path} holds results of another config (hash "
                        f"{old.get('sweep_hash')} != {meta.get('sweep_hash')}); use another "
                        "output folder, or start over (gmoe run --no-resume, "
                        "run_sweep(resume=False))")
            elif self.results_path.exists():
                self.results_path.unlink()
            self.meta_path.write_text(json.dumps(_jsonable(meta), indent=1))
            if resume:
                for rec in read_records(self.results_path, repair=True):
                    if rec.get("config_hash") not in config_hashes:
                        raise ResultsMismatchError(
                            f"{self.results_path} has a record of another config (hash "
                            f"{rec.get('config_hash')}); use another output folder, or start "
                            "over (gmoe run --no-resume, run_sweep(resume=False))")
                    done.add(rec["task"])
            self._fh = open(self.results_path, "a", encoding="utf-8")
        return done

    def _read_meta(self) -> dict:
        if not self.meta_path.exists():
            return {}
        try:
            return json.loads(self.meta_path.read_text())
        except json.JSONDecodeError:
            raise ResultsFolderError(f"{self.meta_path} is damaged (not JSON); delete it to "
                                     "resume, it is written again") from None

    def append(self, record: dict) -> None:
        """Append one record as a JSON line, flushed and fsync'ed."""
        if self._fh is None:
            raise RuntimeError("ResultsFolder.append needs ResultsFolder.start first")
        with _writing(self.path):
            self._fh.write(json.dumps(_jsonable(record)) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())


@dataclass
class RepairReport:
    """What :func:`repair_results` did."""

    path: Path
    kept: int
    damaged: list[int] = field(default_factory=list)
    duplicates: int = 0
    backup: Path | None = None

    def summary(self) -> str:
        if self.backup is None:
            return f"{self.path}: {self.kept} task records, nothing to repair"
        lines = ", ".join(str(i) for i in self.damaged[:10])
        more = ", ..." if len(self.damaged) > 10 else ""
        damaged = (f"{len(self.damaged)} damaged line(s) (line {lines}{more})"
                   if self.damaged else "no damaged line")
        return (f"{self.path}: kept {self.kept} task records; dropped {damaged} and "
                f"{self.duplicates} duplicated record(s); the original is in {self.backup}")


def _backup_name(path: Path) -> Path:
    candidate = path.with_name(path.name + ".bak")
    i = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak{i}")
        i += 1
    return candidate


def repair_results(folder) -> RepairReport:
    """Rewrite a folder's ``results.jsonl`` with every intact task record, once each.

    Damaged lines (anything that is not a complete record, a torn last line too) and
    repeated records of a task (the first is kept) are dropped; the original file is
    first copied to ``results.jsonl.bak`` (``.bak1``, ... if that exists). The folder
    is locked while it is repaired. Running the sweep again then redoes the dropped
    tasks.

    Parameters
    ----------
    folder : str or Path
        A results folder.

    Returns
    -------
    RepairReport
        The counts and the backup's path (``None`` when nothing needed repair).

    Raises
    ------
    FileNotFoundError
        No ``results.jsonl`` in the folder.
    ResultsLockedError
        A sweep is writing the folder.
    """
    folder = Path(folder)
    path = folder / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {RESULTS_FILE} in {folder}")
    with ResultsFolder(folder), _writing(folder):
        data = path.read_bytes()
        kept, damaged, duplicates = [], [], 0
        seen: set = set()
        for lineno, line in enumerate(data.splitlines(keepends=True), start=1):
            if not line.strip():
                continue
            if not line.endswith(b"\n") or not _is_record(line):
                damaged.append(lineno)
                continue
            task = json.loads(line)["task"]
            if task in seen:
                duplicates += 1
                continue
            seen.add(task)
            kept.append(line)
        report = RepairReport(path, len(kept), damaged, duplicates)
        if not damaged and not duplicates:
            return report
        report.backup = _backup_name(path)
        shutil.copy2(path, report.backup)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.writelines(kept)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    return report


def _flatten(rec: dict) -> dict:
    """A record as one row: the per-parameter errors as their columns (their layout is
    :meth:`gmoe.parameter_errors.ParameterErrors.columns`')."""
    from .parameter_errors import ParameterErrors

    row = {k: v for k, v in rec.items()
           if k not in ("parameter_errors", "params", "shift", "metric_errors")}
    if rec.get("parameter_errors"):
        row.update(ParameterErrors.columns(rec["parameter_errors"]))
    return row


def load_results(out_dir):
    """The results of a sweep folder as a pandas DataFrame, one row per task.

    Reads ``results.jsonl``, or the archived ``results.jsonl.gz`` of a committed
    figure folder. A task recorded more than once (two sweeps writing one folder
    before folders were locked) keeps its first record, with a
    :class:`DuplicateRecordsWarning`.

    Per-parameter errors are flattened (see
    :meth:`gmoe.parameter_errors.ParameterErrors.columns`): ``{param}_atom{j}`` for true
    atom j and ``{param}_size{s}`` for the largest error over true atoms whose Voronoi
    cell has s fitted atoms (param in weight, beta1, a, b, var).

    Raises
    ------
    FileNotFoundError
        The folder has no results file.
    DamagedResultsError
        A line before the last is damaged; the message says how to recover
        (``gmoe repair``, :func:`repair_results`).
    EmptyResultsError
        The file holds no finished task yet (a ``ValueError``).
    """
    import pandas as pd

    path = Path(out_dir) / RESULTS_FILE
    if not has_results(out_dir):
        raise FileNotFoundError(f"no {RESULTS_FILE} (or {RESULTS_FILE}.gz) in {out_dir}")
    rows = [_flatten(r) for r in _unique(read_records(path), path)]
    if not rows:
        raise EmptyResultsError(f"no finished task yet in {out_dir}: the sweep stopped "
                                "before its first fit finished (gmoe run resumes it)")
    return pd.DataFrame(rows).sort_values(["sub", "n", "rep"]).reset_index(drop=True)
