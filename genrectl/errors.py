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
