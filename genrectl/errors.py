"""The one exception hierarchy. Every message names the file or value at fault."""

from __future__ import annotations

from pathlib import Path


class GenreError(Exception):
    """Root of every error genrectl raises on purpose; the CLI prints its message in one line."""

    exit_code = 1


class ConfigError(GenreError):
    """A setting or flag has a value genrectl cannot use."""

    exit_code = 2


class DecodeError(GenreError):
    """A file could not be turned into audio samples (corrupt, truncated, not audio...)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot decode '{path}': {reason}")


class UnusableAudioError(DecodeError):
    """Decodable, but not usable as music (silent, too short)."""


# What a user does about a damaged shard of the library (see `genrectl verify`).
REPAIR_HINT = "`genrectl verify --repair` rebuilds it from the audio"


class ShardError(GenreError):
    """An HDF5 feature shard is missing, corrupt, or was made with other feature parameters."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"shard '{path}': {reason}")


class ModelError(GenreError):
    """A model file is missing, tampered with, or does not fit the request."""


class NotFoundError(GenreError):
    """A track, batch, model or playlist named by the user does not exist."""

    exit_code = 3


class EnvironmentFault(GenreError):
    """The machine failed, not the file: no space left, read-only or unwritable storage, the
    database locked or gone, an internal error. Never recorded against a track: the tracks
    stay pending, the run stops, and the next run takes them up again.

    One message argument only, so that it crosses a process boundary (pickling) intact.
    """

    exit_code = 5


class StorageFullError(EnvironmentFault):
    """No space left (or quota exceeded) where genrectl writes."""


class StorageAccessError(EnvironmentFault):
    """Where genrectl writes is read-only, not permitted, or failing (I/O error)."""


class DatabaseFault(EnvironmentFault):
    """The database is locked, unreachable, read-only or failing."""


class InternalFault(EnvironmentFault):
    """An error genrectl did not expect (a bug): not the file's fault either."""


class Interrupted(GenreError):
    """The user stopped a command (Ctrl-C, SIGTERM). The message says what was kept and the
    command that continues; the exit code is 128 + the signal's number (130, 143)."""

    def __init__(self, message: str, *, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
