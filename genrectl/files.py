"""Files genrectl writes whole: never half-written, and a full disk said as such.

Light module (no numpy, h5py or torch): the CLI and the workers share it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from genrectl.errors import StorageAccessError
from genrectl.faults import free_bytes, no_space, storage_fault

_READ_BLOCK = 1 << 20
# Left free on top of a file's own size when checking space before writing it: filesystem
# metadata, and a little room for the database and logs that share the disk.
HEADROOM_BYTES = 64 * 1024


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks. Raises OSError if unreadable."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path: Path, data: bytes, *, what: str, hint: str | None) -> str:
    """Write ``data`` to ``path`` through a temporary file in the same folder: checked for
    space first, flushed to disk, read back and compared, then renamed into place. Returns
    the hex sha256 of ``data``.

    Raises an EnvironmentFault (``what`` and ``hint`` word its message) when the space is
    missing, the folder is read-only, or the bytes read back differ; no temporary file is
    left behind.
    """
    sha256 = hashlib.sha256(data).hexdigest()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if free_bytes(path.parent) < len(data) + HEADROOM_BYTES:
            raise no_space(path.parent, what, hint)
        with temporary.open("xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if file_sha256(temporary) != sha256:
            raise StorageAccessError(
                f"{what} written to {path.parent} read back different: the disk or share may "
                f"be failing; check it{f' or set {hint}' if hint else ''}"
            )
        os.replace(temporary, path)
    except OSError as exc:
        fault = storage_fault(exc, path=path.parent, what=what, hint=hint)
        if fault is None:
            fault = StorageAccessError(
                f"cannot write {what} in {path.parent}: {exc.strerror or exc}"
                f"{f'; set {hint} elsewhere' if hint else ''}"
            )
        raise fault from exc
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        _fsync(path.parent)
    return sha256
