"""Tag writes that can be taken back: ``write_reversibly`` (``tags write``) records what
the file was, ``undo_change`` (``tags undo``) gives the file back the bytes it had.

The journal holds, per file, the sha256 the write left and a patch that rebuilds the old
bytes from those (worker/audio/bytepatch.py). A file whose sha256 is still the one written
gets its old bytes back exactly (checked against the recorded sha256 before the rename) and
its old mtime; a file changed since is refused, or with ``force`` gets its old tag values
put back by mutagen (then its bytes are not guaranteed to be the old ones).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.audio.bytepatch import PatchError, apply_patch, make_patch
from worker.audio.tagwrite import (
    FileStamp,
    TagWriteError,
    check_field,
    read_raw,
    restore_raw,
    set_values,
    staged_edit,
)

RESTORED, ALREADY, REFUSED, FORCED, FAILED = "restored", "already", "refused", "forced", "failed"


@dataclass(frozen=True)
class RecordedChange:
    """What the journal knows of one file's change (a TagChange row, without the database)."""

    path: Path
    patch: bytes
    sha256_before: str
    sha256_after: str
    mtime_ns_before: int
    old_values: dict[str, Any]


@dataclass(frozen=True)
class WriteRecord:
    """One file's change as the journal keeps it: ``before``/``after`` are the file's stamps."""

    old_values: dict[str, Any]
    new_values: list[str]
    before: FileStamp
    after: FileStamp
    patch: bytes


def write_reversibly(
    path: Path, field: str, values: Sequence[str], on_staged: Callable[[WriteRecord], None]
) -> WriteRecord:
    """Set ``field`` of the file at ``path`` to ``values`` (like ``write_values``), calling
    ``on_staged(record)`` once the new file is ready and before it replaces the old one: the
    journal holds the change before the file has it. When ``on_staged`` raises, the file is
    left as it was. Raises TagWriteError, leaving ``path`` untouched, when writing fails."""
    check_field(field)
    old_values = read_raw(path, field)
    mtime_before = path.stat().st_mtime_ns
    with staged_edit(path, lambda tags, kind: set_values(tags, kind, field, list(values))) as tmp:
        try:
            old, new = path.read_bytes(), tmp.read_bytes()
            info = tmp.stat()  # a rename keeps size and mtime
        except OSError as exc:
            raise TagWriteError(path, str(exc)) from None
        patch = make_patch(old, new)
        if apply_patch(patch, new) != old:  # never expected; an undo must not be promised
            raise TagWriteError(path, "could not record an exact undo of this change")
        record = WriteRecord(
            old_values=old_values,
            new_values=list(values),
            before=FileStamp(len(old), mtime_before, _sha256(old)),
            after=FileStamp(info.st_size, info.st_mtime_ns, _sha256(new)),
            patch=patch,
        )
        on_staged(record)
    return record


@dataclass(frozen=True)
class UndoOutcome:
    """``action``: restored, already (the file was as before), refused, forced or failed.
    ``stamp``: the file as it is after the undo (None when it was not touched)."""

    action: str
    reason: str | None = None
    stamp: FileStamp | None = None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _replace_with(path: Path, data: bytes, mtime_ns: int) -> None:
    """Write ``data`` to a copy beside ``path`` and rename it over ``path``, with ``path``'s
    permissions and the given mtime."""
    tmp = path.with_name(f".{path.stem}.genrectl-undo-{os.getpid()}{path.suffix}")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        shutil.copymode(path, tmp)
        os.utime(tmp, ns=(path.stat().st_atime_ns, mtime_ns))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def undo_change(
    change: RecordedChange, *, force: bool = False, dry_run: bool = False
) -> UndoOutcome:
    """Give ``change.path`` back its bytes from before the change (see the module docstring).

    With ``dry_run``, say what would happen and change nothing."""
    path = change.path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return UndoOutcome(REFUSED, "file not found (moved or deleted since)")
    except OSError as exc:
        return UndoOutcome(FAILED, f"cannot read it: {exc}")
    current = _sha256(data)
    if current == change.sha256_before:
        return UndoOutcome(ALREADY, "already as before the write")
    if current != change.sha256_after:
        if not force:
            return UndoOutcome(
                REFUSED, "changed since tags write (its sha256 is not the one written)"
            )
        if dry_run:
            return UndoOutcome(FORCED, "changed since: old values put back, bytes not the old")
        try:
            stamp = restore_raw(path, change.old_values)
        except TagWriteError as exc:
            return UndoOutcome(FAILED, exc.reason)
        return UndoOutcome(FORCED, "changed since: old values put back, bytes not the old", stamp)
    try:
        old = apply_patch(change.patch, data)
    except PatchError as exc:
        return UndoOutcome(FAILED, f"the journal's record does not fit the file: {exc}")
    if _sha256(old) != change.sha256_before:
        return UndoOutcome(FAILED, "the journal's record does not rebuild the old file")
    if dry_run:
        return UndoOutcome(RESTORED)
    try:
        _replace_with(path, old, change.mtime_ns_before)
        info = path.stat()
    except OSError as exc:
        return UndoOutcome(FAILED, f"cannot write it: {exc}")
    stamp = FileStamp(info.st_size, info.st_mtime_ns, change.sha256_before)
    return UndoOutcome(RESTORED, stamp=stamp)
