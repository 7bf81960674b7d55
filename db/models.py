"""Typed declarative models. The database is the source of truth (see DESIGN.md)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


# Shared column types, defined once.
intpk = Annotated[int, mapped_column(Integer, primary_key=True)]
created_at = Annotated[datetime, mapped_column(DateTime(timezone=True), default=utcnow)]
short_text = Annotated[str, mapped_column(String(255))]
sha256_hex = Annotated[str, mapped_column(String(64))]


class TrackStatus(enum.StrEnum):
    PENDING = "pending"  # scanned, waiting for featurization
    OK = "ok"  # featurized: segments are in a shard
    FAILED = "failed"  # could not be featurized; see Track.error
    MISSING = "missing"  # was in the library, is no longer on disk


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BatchStatus(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    # Stopped before its end (Ctrl-C, no space left, its process died): see stop_reason. Its
    # unfinished tracks stay pending and the next ingest takes them up.
    INTERRUPTED = "interrupted"


class JobKind(enum.StrEnum):
    """The stages of the pipeline a batch's track goes through, in order."""

    FEATURIZE = "featurize"  # decode, features, shard (cpu queue)
    LABEL = "label"  # the batch's model labels the track (gpu queue)


class TrainStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict: JSON, int: Integer}


class Track(Base):
    """One audio file of the library, keyed by its path."""

    __tablename__ = "tracks"

    id: Mapped[intpk]
    path: Mapped[str] = mapped_column(Text, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default=TrackStatus.PENDING, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    # Something a user should know about a usable track ("shorter than one 10 s window").
    note: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column(Float)
    sample_rate: Mapped[int | None]
    channels: Mapped[int | None]
    codec: Mapped[str | None] = mapped_column(String(64))
    artist: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    album: Mapped[str | None] = mapped_column(Text)
    genre_tag: Mapped[str | None] = mapped_column(Text)
    # Beats per minute and energy 0..1, measured at featurize time (worker.features.rhythm);
    # None for tracks featurized before they existed (migration 13c3d4e5f0d3).
    tempo_bpm: Mapped[float | None] = mapped_column(Float, index=True)
    energy: Mapped[float | None] = mapped_column(Float, index=True)
    album_artist: Mapped[str | None] = mapped_column(Text)
    # The album it belongs to (db.albums.album_key: album artist + album, else its folder).
    album_key: Mapped[str | None] = mapped_column(Text, index=True)
    added_at: Mapped[created_at]
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    segments: Mapped[list[Segment]] = relationship(
        back_populates="track",
        cascade="all, delete-orphan",
        order_by="[Segment.feature_version, Segment.index]",
    )
    jobs: Mapped[list[Job]] = relationship(back_populates="track")
    predictions: Mapped[list[Prediction]] = relationship(
        back_populates="track", cascade="all, delete-orphan"
    )


class Batch(Base):
    """One run of ``genrectl ingest`` (kind ``ingest``) or a relabelling (kind ``label``):
    its counters are derived from its jobs. ``model_id`` labels its tracks (the promoted
    model when it was planned); without one, a batch ends when its tracks are featurized."""

    __tablename__ = "batches"

    id: Mapped[intpk]
    kind: Mapped[str] = mapped_column(String(32), default="ingest")
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.RUNNING, index=True)
    roots: Mapped[list[str]] = mapped_column(JSON, default=list)
    total: Mapped[int] = mapped_column(default=0)
    done: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    missing: Mapped[int] = mapped_column(default=0)
    # The feature sets its tracks get (the promoted model's when it was planned), as dicts.
    feature_sets: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Embedded runs: "host:pid:token" of the process running it (scheduler.liveness), so a
    # later start can tell a dead run from a live one. None in distributed mode.
    owner: Mapped[str | None] = mapped_column(String(255))
    stop_reason: Mapped[str | None] = mapped_column(Text)
    model_id: Mapped[int | None] = mapped_column(
        ForeignKey("models.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[created_at]
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    jobs: Mapped[list[Job]] = relationship(back_populates="batch", cascade="all, delete-orphan")


class Job(Base):
    """One stage of one track in a batch (``JobKind``: featurize it, label it). Idempotent:
    unique per batch, kind and track."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("batch_id", "kind", "track_id", name="uq_job_batch_track"),)

    id: Mapped[intpk]
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32), default="featurize")
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[created_at]
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    batch: Mapped[Batch] = relationship(back_populates="jobs")
    track: Mapped[Track] = relationship(back_populates="jobs")


class Shard(Base):
    """One HDF5 file of one feature set's rows (segments or windows) from many tracks."""

    __tablename__ = "shards"

    id: Mapped[intpk]
    path: Mapped[str] = mapped_column(Text, unique=True)
    sha256: Mapped[sha256_hex]
    feature_version: Mapped[str] = mapped_column(String(32), index=True)
    n_segments: Mapped[int]
    # Why the file failed its check (checksum, feature version, unreadable), until
    # `genrectl verify --repair` rebuilds its tracks; its rows are skipped meanwhile.
    damaged: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[created_at]

    segments: Mapped[list[Segment]] = relationship(back_populates="shard")


class Segment(Base):
    """Where one segment (reference mel) or window (encoder outputs) of a track lives: its
    feature set's version, shard and row. A track has one run of them per feature set."""

    __tablename__ = "segments"
    # Tracks with identical content share shard rows, so (shard, row) is not unique.
    __table_args__ = (
        UniqueConstraint("track_id", "feature_version", "index", name="uq_segment_track_index"),
    )

    id: Mapped[intpk]
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"), index=True)
    shard_id: Mapped[int] = mapped_column(ForeignKey("shards.id", ondelete="CASCADE"), index=True)
    feature_version: Mapped[str] = mapped_column(String(32), index=True)
    row: Mapped[int]
    index: Mapped[int]
    start_s: Mapped[float] = mapped_column(Float)

    track: Mapped[Track] = relationship(back_populates="segments")
    shard: Mapped[Shard] = relationship(back_populates="segments")


class Model(Base):
    """A trained genre model in the registry. Exactly one may be promoted."""

    __tablename__ = "models"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(128), unique=True)
    arch: Mapped[str] = mapped_column(String(64))
    input_size: Mapped[str] = mapped_column(String(16), default="native")
    classes: Mapped[list[str]] = mapped_column(JSON)
    feature_version: Mapped[str] = mapped_column(String(32))
    feature_params: Mapped[dict] = mapped_column(JSON)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[sha256_hex]
    training: Mapped[dict] = mapped_column(JSON, default=dict)  # data description, config
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    promoted: Mapped[bool] = mapped_column(default=False, index=True)
    created_at: Mapped[created_at]

    predictions: Mapped[list[Prediction]] = relationship(
        back_populates="model", cascade="all, delete-orphan"
    )


def _own(column: str) -> Any:
    """A default that copies the row's own ``column``: a new prediction is its own label at
    album scope until db.albums computes its album."""
    return lambda context: context.get_current_parameters()[column]


class Prediction(Base):
    """A model's answer for one track: the ensemble over the track's segments."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("track_id", "model_id", name="uq_prediction_track_model"),
        # A genre of one model above a confidence, with the track ids: playlists' rules and
        # counts by genre read only the entries they select (migration 0007).
        Index(
            "ix_predictions_model_genre_confidence", "model_id", "genre", "confidence", "track_id"
        ),
        Index(
            "ix_predictions_model_album_genre_confidence",
            "model_id",
            "album_genre",
            "album_confidence",
            "track_id",
        ),
    )

    id: Mapped[intpk]
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    genre: Mapped[str] = mapped_column(String(64), index=True)  # "unknown": see reason
    top_genre: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    # Why the genre is "unknown" ("not music: Speech 0.83", "unclear genre: ..."), else None.
    reason: Mapped[str | None] = mapped_column(Text)
    # How sure the encoder is that it is music at all (None for models without one).
    music: Mapped[float | None] = mapped_column(Float)
    # The encoder's own strongest classes besides genres: [[name, probability], ...].
    tags: Mapped[list[list[Any]] | None] = mapped_column(JSON)
    top3: Mapped[list[list[Any]]] = mapped_column(JSON)  # [[genre, probability], ...]
    probabilities: Mapped[list[float]] = mapped_column(JSON)  # in the model's class order
    threshold: Mapped[float] = mapped_column(Float)
    # The track's label at album scope (db.albums): its album's, or its own where it clearly
    # disagrees.
    album_genre: Mapped[str | None] = mapped_column(String(64), default=_own("genre"))
    album_confidence: Mapped[float | None] = mapped_column(Float, default=_own("confidence"))
    created_at: Mapped[created_at]

    track: Mapped[Track] = relationship(back_populates="predictions")
    model: Mapped[Model] = relationship(back_populates="predictions")


class Playlist(Base):
    """A smart playlist: a saved rule over the library's labels, evaluated whenever it is read.

    ``track_ids`` is what the rule gave at ``refreshed_at``; it only serves to report what
    changed at the next refresh.
    """

    __tablename__ = "playlists"

    id: Mapped[intpk]
    name: Mapped[short_text] = mapped_column(unique=True)
    genres: Mapped[list[str]] = mapped_column(JSON)
    min_confidence: Mapped[float | None] = mapped_column(Float)
    max_tracks: Mapped[int | None]
    order_by: Mapped[str] = mapped_column(String(16), default="confidence")
    max_per_artist: Mapped[int | None]
    # "track" or "album" (db.albums): which label of a track the rule reads.
    scope: Mapped[str] = mapped_column(String(8), default="track", server_default="track")
    seed: Mapped[int | None]  # fixed at creation for random order, so the order is stable
    # Moods, minimum energy and tempo range the tracks must have (db.moods.MoodRule), or None.
    mood_rule: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # "More like this" (db.similar): the seed tracks' ids, and genres the rule leaves out.
    like_track_ids: Mapped[list[int] | None] = mapped_column(JSON)
    exclude_genres: Mapped[list[str] | None] = mapped_column(JSON)
    track_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_at: Mapped[created_at]
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TrackMood(Base):
    """How strongly a track has one mood (0..1), from its encoders' classes when it was
    labelled (worker.inference.moods). Indexed by mood and score: ``--mood happy`` is one
    range of the index."""

    __tablename__ = "track_moods"
    __table_args__ = (Index("ix_track_moods_mood_score", "mood", "score", "track_id"),)

    track_id: Mapped[int] = mapped_column(
        ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True
    )
    mood: Mapped[str] = mapped_column(String(32), primary_key=True)
    score: Mapped[float] = mapped_column(Float)


class Album(Base):
    """One album's genre by one model, from its tracks' combined evidence (db.albums)."""

    __tablename__ = "albums"
    __table_args__ = (UniqueConstraint("model_id", "key", name="uq_album_model_key"),)

    id: Mapped[intpk]
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(Text)
    genre: Mapped[str] = mapped_column(String(64))  # "unknown": unclear, tracks keep theirs
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[list[float]] = mapped_column(JSON)  # in the model's class order
    tracks: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UserLabel(Base):
    """The user's own genre for a track: it wins over every model and is training data."""

    __tablename__ = "user_labels"

    id: Mapped[intpk]
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"), unique=True)
    genre: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[created_at]


class TrainJob(Base):
    """A training run on the cluster (gpu queue). The worker running it beats its heart
    into ``heartbeat_at``; a job whose heart stopped is sent again by reconcile and resumes
    from its last checkpoint. ``progress``: {"run", "epoch", "epochs", "resumed_after"}."""

    __tablename__ = "train_jobs"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(128), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=TrainStatus.QUEUED, index=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(default=0)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[created_at]
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Lease(Base):
    """A cluster-wide turn at a periodic job (reconcile, gc): whoever takes the lease runs
    the job, and nobody else until it expires. ``report`` is what the last run did."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ran_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TagBatch(Base):
    """One run of ``genrectl tags write`` that changed files: the journal ``tags undo`` reads.
    ``options``: the run's flags (max_genres, only_empty, overwrite, min_confidence...)."""

    __tablename__ = "tag_batches"

    id: Mapped[intpk]
    field: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    written: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[created_at]
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    changes: Mapped[list[TagChange]] = relationship(
        back_populates="batch", cascade="all, delete-orphan", order_by="TagChange.id"
    )


class TagChange(Base):
    """One file's tag as ``tags write`` changed it. ``old_values``: each native tag behind
    the field ({"TCON": ["Rock"]}, {"©gen": null, "gnre": [17]}), null where the file had no
    such tag (absent, unlike [""]). ``patch`` rebuilds the file's exact old bytes from its
    new ones (worker/audio/bytepatch.py), so an undo gives the file back byte for byte."""

    __tablename__ = "tag_changes"

    id: Mapped[intpk]
    batch_id: Mapped[int] = mapped_column(
        ForeignKey("tag_batches.id", ondelete="CASCADE"), index=True
    )
    track_id: Mapped[int | None] = mapped_column(
        ForeignKey("tracks.id", ondelete="SET NULL"), index=True
    )
    path: Mapped[str] = mapped_column(Text)
    field: Mapped[str] = mapped_column(String(16))
    old_values: Mapped[dict[str, Any]] = mapped_column(JSON)
    new_values: Mapped[list[str]] = mapped_column(JSON)
    sha256_before: Mapped[sha256_hex]
    sha256_after: Mapped[sha256_hex]
    size_before: Mapped[int] = mapped_column(BigInteger)
    mtime_ns_before: Mapped[int] = mapped_column(BigInteger)
    size_after: Mapped[int] = mapped_column(BigInteger)
    mtime_ns_after: Mapped[int] = mapped_column(BigInteger)
    patch: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[created_at]
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # How it was undone: "restored" (byte for byte), "already" (the file was as before),
    # "forced" (values put back into a file changed since: not byte for byte).
    undo: Mapped[str | None] = mapped_column(String(16))

    batch: Mapped[TagBatch] = relationship(back_populates="changes")


class TrackVector(Base):
    """A track's vector for "more like this" (``worker.inference.vectors``, written when the
    track is labelled), as little-endian float16 bytes of ``dim`` values. ``key`` names the
    recipe and the encoder parameters: only vectors of one key compare. ``id`` is never
    reused (AUTOINCREMENT), so that one key's (count, max id) changes with every write:
    ``db.similar`` keys its cache file on it."""

    __tablename__ = "track_vectors"
    __table_args__ = (
        UniqueConstraint("key", "track_id", name="uq_track_vector_key_track"),
        Index("ix_track_vectors_key_id", "key", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[intpk]
    key: Mapped[str] = mapped_column(String(64))
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"), index=True)
    dim: Mapped[int]
    vector: Mapped[bytes] = mapped_column(LargeBinary)
