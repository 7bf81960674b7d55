"""Faults of the machine told from faults of a file, each said in one line with what to do."""

from __future__ import annotations

import errno
import os
import pickle
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from db.engine import _prepare_sqlite_folder
from genrectl.errors import (
    ConfigError,
    DatabaseFault,
    EnvironmentFault,
    InternalFault,
    StorageAccessError,
    StorageFullError,
)
from genrectl.faults import (
    as_fault,
    database_fault,
    filesystem_type,
    human_bytes,
    mount_point,
    os_errno,
    storage_fault,
)
from genrectl.files import write_atomically
from genrectl.settings import Settings
from tests.smallfs import small_filesystem

# What HDF5 raised in the disk-full run (via h5py), shortened.
HDF5_FULL = RuntimeError(
    "Disable slist on flush dest failure failed (file write failed: time = Thu Dec  3 "
    "06:54:44 2026\n, filename = '/data/shards/shard-1.h5.tmp', file descriptor = 14, "
    "errno = 28, error message = 'No space left on device', buf = 0x1, total write size = 8)"
)
MOUNTS = """\
sysfs /sys sysfs rw,nosuid 0 0
/dev/sda1 / ext4 rw,relatime 0 0
nas:/export/music /mnt/nas nfs4 rw,relatime,vers=4.2 0 0
//box/share /mnt/smb\\040share cifs rw 0 0
"""


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"GENRECTL_HOME": str(tmp_path / "home")})


def test_the_errno_is_found_in_oserrors_hdf5_messages_and_their_causes() -> None:
    assert os_errno(OSError(errno.EROFS, "Read-only file system")) == errno.EROFS
    assert os_errno(HDF5_FULL) == errno.ENOSPC
    try:
        try:
            raise OSError(errno.EIO, "Input/output error")
        except OSError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as outer:
        assert os_errno(outer) == errno.EIO
    assert os_errno(ValueError("no errno here")) is None


def test_a_full_disk_names_the_mount_point_what_was_written_and_what_to_do(
    tmp_path: Path,
) -> None:
    fault = storage_fault(
        HDF5_FULL, path=tmp_path / "shards", what="feature shards", hint="GENRECTL_DATA_DIR"
    )
    assert isinstance(fault, StorageFullError) and fault.exit_code == 5
    message = str(fault)
    assert message.startswith(f"no space left on {mount_point(tmp_path)} writing feature shards")
    assert " free; free space or set GENRECTL_DATA_DIR" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (errno.EROFS, StorageAccessError, "read-only file system; make it writable or set X"),
        (errno.EACCES, StorageAccessError, "permission denied; make it writable or set X"),
        (errno.EIO, StorageAccessError, "I/O error writing shards"),
        (errno.ENOENT, type(None), ""),
    ],
)
def test_read_only_permission_denied_and_failing_disks(
    tmp_path: Path, code: int, kind: type, words: str
) -> None:
    fault = storage_fault(OSError(code, os.strerror(code)), path=tmp_path, what="shards", hint="X")
    assert isinstance(fault, kind)
    assert words in str(fault or "")


def test_database_errors_say_locked_full_or_read_only(tmp_path: Path) -> None:
    settings = _settings(tmp_path)

    def wrapped(text: str) -> OperationalError:
        return OperationalError("INSERT", {}, sqlite3.OperationalError(text))

    locked = database_fault(wrapped("database is locked"), settings)
    assert isinstance(locked, DatabaseFault) and "stayed locked" in str(locked)
    full = database_fault(wrapped("database or disk is full"), settings)
    assert isinstance(full, StorageFullError) and "writing the database" in str(full)
    read_only = database_fault(wrapped("attempt to write a readonly database"), settings)
    assert isinstance(read_only, StorageAccessError)
    assert str(settings.home / "genrectl.db") in str(read_only)
    remote = Settings.from_env(
        {"GENRECTL_DATABASE_URL": "postgresql+psycopg://u:secret@db/x", "GENRECTL_HOME": "/h"}
    )
    gone = database_fault(wrapped("connection refused"), remote)
    assert "unavailable" in str(gone) and "secret" not in str(gone)


def test_anything_else_is_an_internal_fault_never_a_files(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    bug = as_fault(KeyError("mel"), settings, what="featurizing 'a.wav'")
    assert isinstance(bug, InternalFault)
    assert str(bug).startswith("internal error featurizing 'a.wav': KeyError: 'mel'")
    assert isinstance(as_fault(MemoryError(), settings), EnvironmentFault)
    constraint = IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE"))
    assert isinstance(as_fault(constraint, settings), InternalFault)  # a bug, not an outage
    assert isinstance(as_fault(HDF5_FULL, settings), StorageFullError)


def test_faults_cross_a_process_boundary_whole() -> None:
    for fault in (StorageFullError("no space left on /"), InternalFault("internal error: x")):
        again = pickle.loads(pickle.dumps(fault))
        assert type(again) is type(fault) and str(again) == str(fault)


def test_network_shares_are_recognised_and_refused_for_sqlite(tmp_path: Path) -> None:
    assert filesystem_type(Path("/mnt/nas/genrectl/genrectl.db"), MOUNTS) == "nfs4"
    assert filesystem_type(Path("/mnt/smb share/x"), MOUNTS) == "cifs"
    assert filesystem_type(Path("/home/me"), MOUNTS) == "ext4"
    with pytest.raises(ConfigError, match=r"network share \(nfs4\).*local disk"):
        _prepare_sqlite_folder(Path("/mnt/nas/genrectl/genrectl.db"), MOUNTS)
    _prepare_sqlite_folder(tmp_path / "local" / "genrectl.db", MOUNTS)  # ext4: fine
    assert (tmp_path / "local").is_dir()


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (512, 692_224, 4.4e6, 2.1e9)] == [
        "512 B",
        "676 KB",
        "4.2 MB",
        "2.0 GB",
    ]


def test_a_file_that_does_not_fit_is_refused_before_a_byte_is_written(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small", size_kb=256) as small:
        target = small.path / "shard.h5"
        assert write_atomically(target, b"x" * 1000, what="shards", hint="X")
        assert target.read_bytes() == b"x" * 1000
        small.fill()
        with pytest.raises((StorageFullError, StorageAccessError)) as caught:
            write_atomically(small.path / "big.h5", b"y" * 100_000, what="shards", hint="X")
        assert small.full_message in str(caught.value)
        assert sorted(p.name for p in small.path.iterdir()) == sorted(
            [".filler", "shard.h5"] if small.mounted else ["shard.h5"]
        )
