"""Settings: one frozen object built once from the environment (and CLI flags), passed down.

Nothing else in genrectl reads ``os.environ``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from genrectl.errors import ConfigError

ENV_PREFIX = "GENRECTL_"


def _default_home(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local/share")
    return Path(xdg).expanduser() / "genrectl"


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(ENV_PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name}={raw!r} must be an integer") from None
    if value < minimum:
        raise ConfigError(f"{ENV_PREFIX}{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, lo: float, hi: float) -> float:
    raw = env.get(ENV_PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name}={raw!r} must be a number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{ENV_PREFIX}{name}={value} must be between {lo} and {hi}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(ENV_PREFIX + name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{ENV_PREFIX}{name}={raw!r} must be 1/0, true/false, yes/no or on/off")


SCOPES = ("track", "album")


def _scope(env: Mapping[str, str]) -> str:
    value = env.get(ENV_PREFIX + "SCOPE", "track").strip().lower()
    if value not in SCOPES:
        raise ConfigError(f"{ENV_PREFIX}SCOPE={value!r} must be track or album")
    return value


def parse_path_map(raw: str) -> tuple[tuple[str, str], ...]:
    """Parse ``/home/me/Music=/music;/mnt/a=/b`` into ((src, dst), ...)."""
    pairs: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in raw.split(";"))):
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            raise ConfigError(f"{ENV_PREFIX}PATH_MAP entry {item!r} must look like /from=/to")
        pairs.append((src.rstrip("/") or "/", dst.rstrip("/") or "/"))
    return tuple(pairs)


_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@]*:)(?P<pw>[^@]*)(?P<tail>@)", re.I)


def mask_url(url: str | None) -> str | None:
    """Hide the password in a URL: ``redis://:s3cret@host`` -> ``redis://:***@host``."""
    if url is None:
        return None
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}***{m['tail']}", url)


@dataclass(frozen=True)
class Settings:
    """Everything genrectl can be told. See the README's Settings table."""

    home: Path
    database_url: str
    data_dir: Path
    broker_url: str | None = None
    workers: int = 1
    chunk_size: int = 16
    max_segments: int = 20
    min_track_seconds: float = 3.0
    path_map: tuple[tuple[str, str], ...] = ()
    device: str = "auto"
    unknown_threshold: float = 0.35
    # Set by the user (GENRECTL_UNKNOWN_THRESHOLD): it then wins over a model's per-class
    # thresholds (worker.inference.label).
    unknown_threshold_explicit: bool = False
    # Hold each top genre to the model's own per-class threshold (GENRECTL_PER_CLASS_THRESHOLDS)
    # instead of the one global threshold. Off by default: out of fold on folds.csv the
    # calibrated per-class thresholds kept no more right labels than the global one at the
    # same coverage, and left more tracks "unclear" (BENCHMARKS.md, "Albums and per-class
    # thresholds"). `tags write --max-genres` uses them for secondary genres either way.
    per_class_thresholds: bool = False
    # The default scope of labels: "track" (each track's own) or "album" (an album's tracks
    # share its genre unless one clearly disagrees); db.albums. Track by default: an upgrade
    # changes no listing or playlist, and album labels exist only after a labelling run.
    scope: str = "track"
    starter_model: bool = True
    # Embedded mode: how long the warm worker (scheduler.warm) waits for the next command
    # before it exits; 0: no warm worker.
    warm_seconds: int = 600
    # Housekeeping inside the cluster (scheduler.periodic): seconds between reconciles and
    # between gc runs (0: off), and how old unfinished work must be before it counts as lost.
    reconcile_interval_s: int = 30
    reconcile_grace_s: int = 60
    gc_interval_s: int = 3600
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get(ENV_PREFIX + "HOME") or _default_home(env)).expanduser()
        data_dir = Path(env.get(ENV_PREFIX + "DATA_DIR") or home / "data").expanduser()
        database_url = env.get(ENV_PREFIX + "DATABASE_URL") or f"sqlite:///{home / 'genrectl.db'}"
        device = env.get(ENV_PREFIX + "DEVICE", "auto")
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise ConfigError(f"{ENV_PREFIX}DEVICE={device!r} must be auto, cpu, cuda or cuda:N")
        settings = cls(
            home=home,
            database_url=database_url,
            data_dir=data_dir,
            broker_url=env.get(ENV_PREFIX + "BROKER_URL") or None,
            workers=_int(env, "WORKERS", os.cpu_count() or 1),
            chunk_size=_int(env, "CHUNK_SIZE", 16),
            max_segments=_int(env, "MAX_SEGMENTS", 20),
            min_track_seconds=_float(env, "MIN_TRACK_SECONDS", 3.0, lo=0.1, hi=6.0),
            path_map=parse_path_map(env.get(ENV_PREFIX + "PATH_MAP", "")),
            device=device,
            unknown_threshold=_float(env, "UNKNOWN_THRESHOLD", 0.35, lo=0.0, hi=1.0),
            unknown_threshold_explicit=bool(env.get(ENV_PREFIX + "UNKNOWN_THRESHOLD")),
            per_class_thresholds=_bool(env, "PER_CLASS_THRESHOLDS", False),
            scope=_scope(env),
            starter_model=_bool(env, "STARTER_MODEL", True),
            warm_seconds=_int(env, "WARM_SECONDS", 600, minimum=0),
            reconcile_interval_s=_int(env, "RECONCILE_INTERVAL", 30, minimum=0),
            reconcile_grace_s=_int(env, "RECONCILE_GRACE", 60, minimum=0),
            gc_interval_s=_int(env, "GC_INTERVAL", 3600, minimum=0),
        )
        return replace(settings, **overrides) if overrides else settings

    @property
    def global_threshold_only(self) -> bool:
        """Labels are held to the one global unknown threshold, not a model's per-class
        ones: unless per-class thresholds are asked for, and always when the user set the
        global threshold."""
        return self.unknown_threshold_explicit or not self.per_class_thresholds

    @property
    def embedded(self) -> bool:
        """No broker configured: every task runs in local processes."""
        return self.broker_url is None

    @property
    def shard_dir(self) -> Path:
        return self.data_dir / "shards"

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "models"

    def map_path(self, path: str) -> str:
        """Translate a library path as the CLI saw it into the path this host sees."""
        for src, dst in self.path_map:
            if path == src or path.startswith(src.rstrip("/") + "/"):
                return dst + path[len(src.rstrip("/")) :]
        return path

    def public(self) -> dict[str, Any]:
        """The effective settings as printable values, secrets masked."""
        values = asdict(self)
        values.pop("extra")
        values["database_url"] = mask_url(self.database_url)
        values["broker_url"] = mask_url(self.broker_url)
        values["mode"] = "embedded" if self.embedded else "distributed"
        values["path_map"] = ";".join(f"{a}={b}" for a, b in self.path_map)
        return {key: str(v) if isinstance(v, Path) else v for key, v in values.items()}
