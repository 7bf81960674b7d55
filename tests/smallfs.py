"""A real small filesystem for fault tests: a tmpfs of a few MB mounted on a test's folder.

Mounting needs root (or CAP_SYS_ADMIN). Where it is not permitted, ``small_filesystem``
falls back to a plain folder and ``fill`` makes it unwritable instead of full (the failure
is then EACCES, not ENOSPC, and the tests check that message instead); where neither can
be done (root without mount rights ignores permissions), the test is skipped with the
reason.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

FILLER = ".filler"


@dataclass
class SmallFilesystem:
    path: Path
    mounted: bool  # a tmpfs of its own; else a folder made unwritable by ``fill``

    @property
    def full_message(self) -> str:
        """What genrectl says once ``fill`` has run."""
        return "no space left on" if self.mounted else "permission denied"

    def fill(self) -> None:
        """Leave no room: a filler file takes every free byte (or, on the fallback, the
        folder and everything below it become read-only for the user)."""
        if not self.mounted:
            for folder, _dirs, _files in os.walk(self.path):
                os.chmod(folder, 0o555)
            return
        descriptor = os.open(self.path / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (64 * 1024, 1024, 1):  # big bites, then the last few bytes
                with contextlib.suppress(OSError):
                    while True:
                        os.write(descriptor, b"\0" * size)
        finally:
            os.close(descriptor)

    def free(self) -> None:
        """Undo ``fill``."""
        if not self.mounted:
            for folder, _dirs, _files in os.walk(self.path):
                os.chmod(folder, 0o755)
            return
        (self.path / FILLER).unlink(missing_ok=True)


def _mount(path: Path, size_kb: int) -> bool:
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


@contextmanager
def small_filesystem(path: Path, *, size_kb: int) -> Iterator[SmallFilesystem]:
    """A ``size_kb`` tmpfs mounted on ``path`` (created), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    if _mount(path, size_kb):
        try:
            yield SmallFilesystem(path, mounted=True)
        finally:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
        return
    if os.geteuid() == 0:
        pytest.skip("cannot mount a tmpfs here, and as root an unwritable folder is writable")
    # No mount rights: an unwritable folder stands in for the full disk.
    filesystem = SmallFilesystem(path, mounted=False)
    try:
        yield filesystem
    finally:
        filesystem.free()


@contextmanager
def read_only_filesystem(path: Path) -> Iterator[None]:
    """``path`` (already holding what the test put there) remounted read-only: a tmpfs is
    mounted, the content copied in, and remounted ``ro``; or, without mount rights, the
    folder made unwritable."""
    staged = path.with_name(path.name + ".staged")
    path.rename(staged)
    path.mkdir()
    if _mount(path, 64 * 1024):
        try:
            subprocess.run(["cp", "-a", f"{staged}/.", str(path)], check=True)
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
            yield
        finally:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
        return
    path.rmdir()
    staged.rename(path)
    if os.geteuid() == 0:
        pytest.skip("cannot mount a tmpfs here, and as root an unwritable folder is writable")
    for folder, _dirs, files in os.walk(path):
        os.chmod(folder, 0o555)
        for name in files:
            os.chmod(Path(folder) / name, 0o444)
    try:
        yield
    finally:
        for folder, _dirs, files in os.walk(path):
            os.chmod(folder, 0o755)
            for name in files:
                os.chmod(Path(folder) / name, 0o644)
