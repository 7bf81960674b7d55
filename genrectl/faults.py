"""Telling faults of the machine from faults of a file, and saying what to do about them.

A file that cannot be decoded is the file's fault and is recorded on its track. Everything
here is the machine's: no space left, read-only or unwritable storage, a failing disk, the
database locked, read-only or unreachable, an error genrectl did not expect. Those become an
``EnvironmentFault`` whose one-line message names the place and what to do; the caller stops
the run and leaves the tracks pending. Light module: no torch, h5py or SQLAlchemy at import.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from genrectl.errors import (
    DatabaseFault,
    EnvironmentFault,
    InternalFault,
    StorageAccessError,
    StorageFullError,
)
from genrectl.settings import mask_url

if TYPE_CHECKING:
    from genrectl.settings import Settings

FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
FAILING = frozenset({errno.EIO})
# HDF5 reports the errno of a failed write inside its message ("..., errno = 28, ...").
_HDF5_ERRNO = re.compile(r"\berrno = (\d+)")

# Filesystems on which SQLite's locking (and WAL's shared memory) cannot be trusted.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb", "smb3", "smbfs", "afs", "9p", "ceph", "glusterfs", "lustre"}
    | {"fuse.sshfs", "fuse.rclone", "fuse.s3fs", "fuse.gcsfuse", "davfs", "fuse.davfs2"}
)


def human_bytes(n: float) -> str:
    """``676 KB``, ``4.2 MB``, ``1.9 GB`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover  (the loop returns at GB)


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest parent that exists (a folder not created yet has none)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem that holds (or would hold) ``path``."""
    path = existing_ancestor(path)
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def read_only_filesystem(path: Path) -> bool:
    """Whether ``path``'s filesystem is mounted read-only."""
    try:
        return bool(os.statvfs(existing_ancestor(path)).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def network_filesystem(path: Path, mounts: str | None = None) -> str | None:
    """The network filesystem type (``nfs4``, ``cifs``...) holding ``path``, else None."""
    kind = filesystem_type(path, mounts)
    return kind if kind in NETWORK_FILESYSTEMS else None


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem."""
    return shutil.disk_usage(existing_ancestor(path)).free


def filesystem_type(path: Path, mounts: str | None = None) -> str | None:
    """The type of the filesystem holding ``path`` (``ext4``, ``nfs4``...), from
    ``/proc/self/mounts`` (or ``mounts``, its text); None where that cannot be read."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return None
    target = str(Path(os.path.abspath(path)))
    best, kind = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def os_errno(exc: BaseException) -> int | None:
    """The errno behind ``exc`` or the exceptions it was raised from: an OSError's, or the
    one HDF5 writes into its messages."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno:
            return current.errno
        match = _HDF5_ERRNO.search(str(current))
        if match:
            return int(match.group(1))
        current = current.__cause__ or current.__context__
    return None


def no_space(path: Path, what: str, hint: str | None) -> StorageFullError:
    """The message for a full disk: where, how much is free, what to do."""
    return StorageFullError(
        f"no space left on {mount_point(path)} writing {what}: {human_bytes(free_bytes(path))} "
        f"free; free space{f' or set {hint}' if hint else ''}"
    )


def storage_fault(
    exc: BaseException, *, path: Path, what: str, hint: str | None
) -> EnvironmentFault | None:
    """The fault ``exc`` stands for when writing ``what`` at ``path`` went wrong, or None if
    it is not one of the machine's (``hint``: the setting that moves it elsewhere)."""
    code = os_errno(exc)
    if code in FULL:
        return no_space(path, what, hint)
    place = existing_ancestor(path if path.suffix == "" else path.parent)
    elsewhere = f" or set {hint}" if hint else ""
    if code in NOT_WRITABLE:
        reason = os.strerror(code or 0).lower()
        return StorageAccessError(
            f"cannot write {what} in {place}: {reason}; make it writable{elsewhere}"
        )
    if code in FAILING:
        return StorageAccessError(
            f"I/O error writing {what} in {place}: the disk or share may be failing; "
            f"check it (dmesg){elsewhere}"
        )
    return None


def database_fault(exc: BaseException, settings: Settings) -> EnvironmentFault:
    """An error from the database (SQLAlchemy's, or the driver's) as a one-line fault."""
    url = settings.database_url
    detail = " ".join(str(getattr(exc, "orig", None) or exc).split())[:200]
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[-1])
        return _sqlite_fault(detail.lower(), path) or DatabaseFault(
            f"database {path} failed: {detail}"
        )
    return DatabaseFault(
        f"the database {mask_url(url)} is unavailable ({detail}); check that it is running and "
        "reachable (GENRECTL_DATABASE_URL), then run the command again"
    )


def _sqlite_fault(detail: str, path: Path) -> EnvironmentFault | None:
    hint = "GENRECTL_HOME (or GENRECTL_DATABASE_URL)"
    if "locked" in detail or "busy" in detail:
        return DatabaseFault(
            f"the database {path} stayed locked by another program for 60 s; close what holds "
            "it (a DB browser, a stuck genrectl) and run the command again"
        )
    if "full" in detail:
        return no_space(path, "the database", hint)
    if "readonly" in detail or "read-only" in detail or "unable to open" in detail:
        folder = existing_ancestor(path.parent)
        if read_only_filesystem(folder):
            return StorageAccessError(
                f"cannot write the database {path}: {mount_point(folder)} is mounted "
                f"read-only; remount it read-write or set {hint}"
            )
        if not os.access(folder, os.W_OK):
            return StorageAccessError(
                f"cannot write the database {path}: its folder {folder} is not writable by "
                f"you; fix its permissions or set {hint}"
            )
        return StorageAccessError(
            f"cannot write the database {path}: the file (or its -wal/-shm files) is read-only "
            f"or was replaced; make it writable or set {hint}"
        )
    if "disk i/o error" in detail or "malformed" in detail:
        return StorageAccessError(
            f"the database {path} cannot be read or written ({detail}); check the disk, restore "
            f"a copy, or set {hint}"
        )
    return None


def as_fault(exc: BaseException, settings: Settings, *, what: str = "") -> EnvironmentFault:
    """Any exception as an EnvironmentFault: a known fault of storage or of the database as
    itself, anything else as an internal error (a bug), never as the file's fault."""
    if isinstance(exc, EnvironmentFault):
        return exc
    if is_database_error(exc):
        return database_fault(exc, settings)
    if isinstance(exc, MemoryError):
        return EnvironmentFault(
            f"out of memory{' ' + what if what else ''}; lower GENRECTL_WORKERS or close "
            "other programs"
        )
    filename = getattr(exc, "filename", None)
    where = Path(filename) if isinstance(filename, str) else settings.data_dir
    fault = storage_fault(exc, path=where, what=what or "data", hint="GENRECTL_DATA_DIR")
    if fault is not None:
        return fault
    text = " ".join(str(exc).split())[:200]
    return InternalFault(
        f"internal error{' ' + what if what else ''}: {type(exc).__name__}: {text} (not your "
        "file's fault; -v shows the traceback, please report it)"
    )


_DATABASE_ERRORS = frozenset(
    {"OperationalError", "InterfaceError", "TimeoutError", "DatabaseError"}
)


def is_database_error(exc: BaseException) -> bool:
    """The database failing (not a constraint or a bug in a statement): matched by name, so
    that this module imports no driver."""
    module = type(exc).__module__ or ""
    return module.startswith(("sqlalchemy", "sqlite3", "psycopg")) and (
        type(exc).__name__ in _DATABASE_ERRORS
    )
