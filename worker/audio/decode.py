"""Decoding audio files into the 6 s mono segments the model sees.

Rules (the README repeats them):

- Decoders: soundfile (libsndfile) for PCM and FLAC (.wav .aiff .au .flac and aliases);
  PyAV (ffmpeg) for the lossy codecs (MP3, AAC/ALAC in M4A, Vorbis, Opus, WMA...), and
  each for any file the other refuses to open. ffmpeg's decoders measured as fast as
  libsndfile's for MP3 and faster for Opus (2.7x) and Vorbis (1.4x) (BENCHMARKS.md,
  "Speed targets"). FLAC stays with libsndfile although ffmpeg decodes it 1.6x
  faster: ffmpeg skips a damaged FLAC frame without a word, libsndfile reports it.
- Mono is the mean of the channels, taken before resampling; the rate is converted to
  ``params.sample_rate`` with soxr at its "HQ" setting (what ``librosa.load`` uses, so the
  reference's features see the same band; 4-9x faster than torchaudio's sinc here).
- Segments lie on a grid of ``params.segment_seconds`` starting at 0, without overlap. The
  remainder after the last full segment is dropped. A track shorter than one segment but at
  least ``min_seconds`` long becomes one zero-padded segment; a shorter one is unusable.
  With more full segments than ``max_segments``, the segments at indices
  ``round(linspace(0, n - 1, max_segments))`` are used, so the result is deterministic and
  always spans the track from the first segment to the last.
- A track whose used audio peaks below -60 dBFS is silent, hence unusable.
- Memory and time are bounded by ``max_segments``, not by the file's length: only the
  windows needed are read. soundfile seeks to each; PyAV streams frame by frame, keeping
  only the windows in progress, and seeks ahead over a gap of more than ``_SEEK_GAP_S``
  (a window there is then placed by the frames' timestamps, after a pre-roll that lets
  the decoder's state settle). Each window carries a little context on both sides so that
  resampling and MP3 decoder warm-up make it identical to slicing the fully decoded,
  resampled track.
- A file whose audio ends more than 0.5 s before its header says is truncated.
- Every failure is a DecodeError (UnusableAudioError for silent or too short audio) whose
  reason is one line under 200 characters.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import numpy as np
import soundfile
import soxr

from genrectl.errors import DecodeError, UnusableAudioError
from worker.audio.windows import WindowSpec, plan_segments
from worker.features.mel import FeatureParams

SOUNDFILE_EXTENSIONS = frozenset(
    {".wav", ".wave", ".aiff", ".aif", ".aifc", ".au", ".snd", ".flac"}
)
SILENCE_DBFS = -60.0
TRUNCATION_TOLERANCE_S = 0.5
_MAX_REASON = 200
# Context read before each window, in source samples: two MP3 frames, so that mpg123's
# output after a seek equals its output when decoding from the start.
_WARMUP_SAMPLES = 2304
# Integer PCM scale by sample format (PyAV's names without the planar "p").
_PCM_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 2.0**63}
# PyAV seeks rather than decodes through a gap longer than this between windows: long
# tracks cost about what a 30 s one does (a 30 s track is never sought in).
_SEEK_GAP_S = 20.0
# Decoded and dropped after a seek, before the window's own context: MP3's bit reservoir,
# AAC and Vorbis overlap-add and Opus's pre-roll (80 ms) all settle well within it.
_SEEK_PREROLL_S = 0.5
# Frames converted to mono together (a few tenths of a second of audio).
_FRAMES_PER_CHUNK = 32
# Containers without an index, where ffmpeg guesses a seek's position from the bitrate:
# decoded through instead.
_NO_SEEK = frozenset({"aac", "ac3", "adts"})


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds. duration_s is in seconds, sample_rate in Hz.

    codec and container are lower-case names from the decoder that reads the file, e.g.
    ``pcm_16``/``wav`` or ``vorbis``/``ogg`` from soundfile, ``aac``/``mov`` from PyAV.
    """

    sample_rate: int
    channels: int
    duration_s: float
    codec: str
    container: str


@dataclass(frozen=True)
class DecodedTrack:
    """A track's segments: audio is float32 [len(starts_s), segment_samples], mono, at the
    target rate; starts_s are segment start times in seconds on the segment grid."""

    info: AudioInfo
    starts_s: list[float]
    audio: np.ndarray


def _reason(text: str) -> str:
    """One line under 200 characters."""
    line = " ".join(text.split()) or "unknown error"
    return line if len(line) < _MAX_REASON else line[: _MAX_REASON - 4] + "..."


class _RefusedError(Exception):
    """A decoder cannot open the file at all (another may)."""


def _libsndfile_reason(exc: Exception) -> str:
    reason = str(getattr(exc, "error_string", exc))
    # libsndfile's message for data it cannot parse misleads when the file plainly exists.
    if "does not exist" in reason:
        return "unrecognised data"
    return reason.removeprefix("Error : ").rstrip(".")


@dataclass(frozen=True)
class _Window:
    """Source samples [start, stop) to read; the window's ``samples`` at the target rate start
    ``trim`` samples into the resampled source; the window's own audio ends at ``core_stop``."""

    start: int
    stop: int
    core_stop: int
    trim: int
    samples: int


class _Reader(Protocol):
    info: AudioInfo
    frames: int

    def windows(self, spans: Sequence[tuple[int, int]]) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


class _SoundFileReader:
    """Seeks to each window and reads only it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = soundfile.SoundFile(str(path))
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
            raise _RefusedError(_libsndfile_reason(exc)) from exc
        self.frames = self._file.frames
        self.info = AudioInfo(
            sample_rate=self._file.samplerate,
            channels=self._file.channels,
            duration_s=self.frames / self._file.samplerate,
            codec=self._file.subtype.lower(),
            container=self._file.format.lower(),
        )

    def windows(self, spans: Sequence[tuple[int, int]]) -> Iterator[np.ndarray]:
        for start, stop in spans:
            try:
                self._file.seek(start)
                block = self._file.read(stop - start, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as exc:
                rate = self.info.sample_rate
                where = f"between {start / rate:.1f} s and {stop / rate:.1f} s"
                reason = _reason(f"read failed {where}: {_libsndfile_reason(exc)}")
                raise DecodeError(self.path, reason) from None
            yield block.mean(axis=1, dtype=np.float32)

    def close(self) -> None:
        self._file.close()


def _frame_channels(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame's samples as decoded: [channels, samples] of its sample format."""
    data = frame.to_ndarray()
    if frame.format.is_planar:
        return data
    return data.reshape(-1, frame.layout.nb_channels).T


def _mono(parts: list[np.ndarray], format_name: str) -> np.ndarray:
    """Frames of one sample format (``_frame_channels``) as float32 mono samples (full scale
    1.0); converted together, as per-frame numpy calls cost more than AAC's decoding."""
    name = format_name.removesuffix("p")
    data = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    if name == "flt":
        return data.mean(axis=0, dtype=np.float32)
    samples = data.astype(np.float32)
    if name == "u8":
        samples -= 128.0
    samples /= _PCM_SCALE.get(name, 1.0)
    return samples.mean(axis=0)


def _opus_pre_skip(context: av.AudioCodecContext) -> int:
    """Samples an Opus stream's length counts but its decoder drops (the OpusHead's
    pre-skip, at 48 kHz); 0 for any other codec."""
    head = context.extradata or b""
    if context.name != "opus" or not head.startswith(b"OpusHead") or len(head) < 12:
        return 0
    return int.from_bytes(head[10:12], "little") * context.sample_rate // 48000


class _PyAVReader:
    """Decodes frame by frame from the start, keeping only the windows in progress."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._container = self._open()
        try:
            self.frames, self.info = self._describe()
        except DecodeError:
            self.close()
            raise

    def _describe(self) -> tuple[int, AudioInfo]:
        stream = self._container.streams.audio[0]
        context = stream.codec_context
        if not context.sample_rate or not context.channels:
            raise DecodeError(self.path, "audio stream has no sample rate or no channels")
        rate = context.sample_rate
        if stream.duration is not None and stream.time_base is not None:
            frames = round(stream.duration * stream.time_base * rate)
        elif self._container.duration is not None:
            frames = round(self._container.duration / av.time_base * rate)
        else:
            frames = self._count_samples()
        frames -= _opus_pre_skip(context)
        info = AudioInfo(
            sample_rate=rate,
            channels=context.channels,
            duration_s=frames / rate,
            codec=context.name,
            container=self._container.format.name.split(",")[0],
        )
        return frames, info

    def _open(self) -> av.container.InputContainer:
        try:
            container = av.open(str(self.path), metadata_errors="ignore")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise _RefusedError(getattr(exc, "strerror", None) or str(exc)) from exc
        if not container.streams.audio:
            container.close()
            raise DecodeError(self.path, "no audio stream")
        return container

    def _frames(self, *, seek_to: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """(position, mono samples) of each decoded frame, position in samples from the
        start: counted from the start of the file, or after seeking to about ``seek_to``
        placed by the first frame's timestamp."""
        stream = self._container.streams.audio[0]
        position: int | None = 0
        rate, base, origin = self.info.sample_rate, stream.time_base or 0, stream.start_time or 0
        if seek_to > 0:
            self._container.seek(origin + int(seek_to / rate / base), stream=stream)
            position = None
        parts: list[np.ndarray] = []
        format_name = ""
        try:
            for frame in self._container.decode(stream):
                if position is None:
                    if frame.pts is None:
                        raise DecodeError(self.path, "no timestamps to seek by")
                    position = round((frame.pts - origin) * base * rate)
                if parts and frame.format.name != format_name:
                    yield position, (chunk := _mono(parts, format_name))
                    position, parts = position + len(chunk), []
                parts.append(_frame_channels(frame))
                format_name = frame.format.name
                if len(parts) == _FRAMES_PER_CHUNK:
                    yield position, (chunk := _mono(parts, format_name))
                    position, parts = position + len(chunk), []
            if parts and position is not None:
                yield position, _mono(parts, format_name)
        except (av.FFmpegError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise DecodeError(self.path, _reason(f"decoding failed: {reason}")) from None

    def _seekable(self) -> bool:
        stream = self._container.streams.audio[0]
        return stream.time_base is not None and self._container.format.name not in _NO_SEEK

    def _count_samples(self) -> int:
        """Length unknown to the container: one decoding pass to count, then start over."""
        total = sum(len(chunk) for _, chunk in self._frames())
        self._container.close()
        self._container = self._open()
        return total

    def windows(self, spans: Sequence[tuple[int, int]]) -> Iterator[np.ndarray]:
        """Each span's samples, spans in order of their start: a run of spans close together
        is decoded in one stream; one further than _SEEK_GAP_S into the file is sought."""
        gap = round(_SEEK_GAP_S * self.info.sample_rate)
        preroll = round(_SEEK_PREROLL_S * self.info.sample_rate)
        runs = _runs(spans, gap) if self._seekable() else [list(spans)]
        for run in runs:
            start = run[0][0]
            yield from _collect(self._frames(seek_to=start - preroll if start > gap else 0), run)

    def close(self) -> None:
        self._container.close()


def _runs(spans: Sequence[tuple[int, int]], gap: int) -> list[list[tuple[int, int]]]:
    """``spans`` (sorted by start) in runs: a span starting more than ``gap`` samples after
    the end of the one before starts a new run."""
    runs: list[list[tuple[int, int]]] = []
    for span in spans:
        if runs and span[0] - runs[-1][-1][1] <= gap:
            runs[-1].append(span)
        else:
            runs.append([span])
    return runs


def _collect(
    frames: Iterator[tuple[int, np.ndarray]], spans: Sequence[tuple[int, int]]
) -> Iterator[np.ndarray]:
    """The samples of each span (sorted by start) from positioned frames, keeping only the
    spans in progress; a span the frames end before comes out short (or empty)."""
    active: list[tuple[int, int, list[np.ndarray]]] = []
    pending = list(spans)[::-1]
    done = 0
    for position, chunk in frames:
        end = position + len(chunk)
        while pending and pending[-1][0] < end:
            active.append((*pending.pop(), []))
        for start, stop, parts in active:
            lo, hi = max(start, position), min(stop, end)
            if lo < hi:
                parts.append(chunk[lo - position : hi - position])
        while active and active[0][1] <= end:
            yield np.concatenate(active.pop(0)[2])
            done += 1
        if done == len(spans):
            return
    for _, _, parts in active:
        yield np.concatenate(parts) if parts else np.zeros(0, np.float32)
    for _ in pending:
        yield np.zeros(0, np.float32)


def _open(path: Path) -> contextlib.closing[_Reader]:
    """soundfile first for PCM and FLAC, then PyAV, then soundfile for another file
    ffmpeg refuses."""
    if not path.is_file():
        raise DecodeError(path, "not a file" if path.exists() else "file not found")
    if path.stat().st_size == 0:
        raise DecodeError(path, "empty file")
    refusals = []
    if path.suffix.lower() in SOUNDFILE_EXTENSIONS:
        try:
            return contextlib.closing(_SoundFileReader(path))
        except _RefusedError as exc:
            refusals.append(f"libsndfile: {exc}")
    try:
        return contextlib.closing(_PyAVReader(path))
    except _RefusedError as exc:
        refusals.append(f"ffmpeg: {exc}")
    if path.suffix.lower() not in SOUNDFILE_EXTENSIONS:
        try:
            return contextlib.closing(_SoundFileReader(path))
        except _RefusedError as exc:
            refusals.append(f"libsndfile: {exc}")
    raise DecodeError(path, _reason(f"not a readable audio file ({'; '.join(refusals)})"))


def probe(path: Path) -> AudioInfo:
    """Rate, channels, duration and codec of an audio file, reading as little as it can.

    Raises DecodeError(path, reason) when the file is missing, empty or not decodable audio.
    """
    with _open(path) as reader:
        return reader.info


def _plan_window(first: int, samples: int, *, rate: int, frames: int, target_rate: int) -> _Window:
    """The source window for ``samples`` samples at ``target_rate`` from target sample
    ``first``.

    Resampling maps source sample ``k * step_in`` exactly onto target sample ``k * step_out``;
    the window starts on such an aligned sample, less a context of whole steps.
    """
    common = math.gcd(rate, target_rate)
    step_in, step_out = rate // common, target_rate // common
    context = math.ceil(_WARMUP_SAMPLES / step_in)
    begin = max(0, first // step_out - context)
    core_stop = min(frames, math.ceil((first + samples) * rate / target_rate))
    return _Window(
        start=begin * step_in,
        stop=min(frames, core_stop + context * step_in),
        core_stop=core_stop,
        trim=first - begin * step_out,
        samples=samples,
    )


@dataclass(frozen=True)
class _Wanted:
    """Row ``row`` of spec ``spec``'s windows: ``samples`` at the target rate from target
    sample ``first``; ``repeat`` fills what the track lacks with the track again."""

    spec: int
    row: int
    first: int
    samples: int
    repeat: bool


def _stretches(wanted: Sequence[_Wanted]) -> list[tuple[int, int, list[_Wanted]]]:
    """Windows that overlap or touch, joined: (first, end, members) in order. Each stretch
    is decoded and resampled once (the encoders' windows cover what the mel's do)."""
    stretches: list[tuple[int, int, list[_Wanted]]] = []
    for item in sorted(wanted, key=lambda w: w.first):
        if stretches and item.first <= stretches[-1][1]:
            first, end, members = stretches[-1]
            stretches[-1] = (first, max(end, item.first + item.samples), [*members, item])
        else:
            stretches.append((item.first, item.first + item.samples, [item]))
    return stretches


def _resampled(
    path: Path, mono: np.ndarray, *, window: _Window, rate: int, target_rate: int
) -> np.ndarray:
    """A window at the target rate from its decoded source: checked, resampled, trimmed;
    shorter than ``window.samples`` where the track ends first."""
    short = window.start + len(mono) < window.core_stop - TRUNCATION_TOLERANCE_S * rate
    if short or len(mono) == 0:
        ends, claims = (window.start + len(mono)) / rate, window.core_stop / rate
        raise DecodeError(path, f"truncated: audio ends at {ends:.1f} s, expected {claims:.1f} s")
    if not np.isfinite(mono).all():
        raise DecodeError(path, "non-finite samples (NaN or infinity)")
    resampled = resample(mono, rate=rate, target_rate=target_rate)
    return resampled[window.trim : window.trim + window.samples]


def _fill(piece: np.ndarray, samples: int, *, repeat: bool) -> np.ndarray:
    """``piece`` made ``samples`` long: zeros after it, or itself again when ``repeat``."""
    if len(piece) >= samples:
        return piece[:samples]
    if repeat and len(piece):
        return np.resize(piece, samples).astype(np.float32, copy=False)
    filled = np.zeros(samples, np.float32)
    filled[: len(piece)] = piece
    return filled


def resample(audio: np.ndarray, *, rate: int, target_rate: int) -> np.ndarray:
    """Mono float32 ``audio`` at ``rate`` Hz to ``target_rate`` Hz (soxr "HQ"; sample ``k``
    of the result is the signal at ``k / target_rate`` s, the filter's delay removed)."""
    if rate == target_rate:
        return audio
    out: np.ndarray = soxr.resample(audio, rate, target_rate, quality="HQ")
    return out.astype(np.float32, copy=False)


def _check_level(path: Path, audio: Sequence[np.ndarray]) -> None:
    peak = max(float(np.abs(block).max()) for block in audio)
    level = 20 * math.log10(peak) if peak > 0 else -math.inf
    if level < SILENCE_DBFS:
        shown = "-inf" if level == -math.inf else f"{level:.1f}"
        raise UnusableAudioError(path, f"silent: peak {shown} dBFS")


@dataclass(frozen=True)
class DecodedWindows:
    """One WindowSpec's windows: audio float32 [len(starts_s), samples], mono at the decode's
    rate; ``padded`` when the track is shorter than one window (zeros after its end)."""

    starts_s: list[float]
    audio: np.ndarray
    padded: bool


def load_windows(
    path: Path,
    *,
    sample_rate: int,
    specs: Sequence[WindowSpec],
    min_seconds: float,
) -> tuple[AudioInfo, list[DecodedWindows]]:
    """Decode, in one pass over the file, the windows every spec of ``specs`` selects.

    Returns the file's AudioInfo and, per spec, its windows at ``sample_rate`` Hz. Raises
    UnusableAudioError when the track is shorter than ``min_seconds`` or silent, DecodeError
    for any other failure.
    """
    with _open(path) as reader:
        info = reader.info
        plans = [_starts(path, info, spec, min_seconds) for spec in specs]
        wanted = [
            _Wanted(i, row, round(start * sample_rate), sizes[i], spec.fill == "repeat")
            for sizes in [[round(spec.seconds * sample_rate) for spec in specs]]
            for i, (spec, starts) in enumerate(zip(specs, plans, strict=True))
            for row, start in enumerate(starts)
        ]
        stretches = _stretches(wanted)
        windows = [
            _plan_window(
                first,
                end - first,
                rate=info.sample_rate,
                frames=reader.frames,
                target_rate=sample_rate,
            )
            for first, end, _ in stretches
        ]
        audio = [
            np.empty((len(starts), round(spec.seconds * sample_rate)), np.float32)
            for spec, starts in zip(specs, plans, strict=True)
        ]
        # One pass: readers take spans in order of their start (PyAV streams from the start).
        decoded = reader.windows([(w.start, w.stop) for w in windows])
        for (first, _, members), window, mono in zip(stretches, windows, decoded, strict=True):
            piece = _resampled(
                path, mono, window=window, rate=info.sample_rate, target_rate=sample_rate
            )
            for item in members:
                offset = item.first - first
                own = piece[offset : offset + item.samples]
                audio[item.spec][item.row] = _fill(own, item.samples, repeat=item.repeat)
    _check_level(path, audio)
    return info, [
        DecodedWindows(starts, block, padded=info.duration_s < spec.seconds - 1e-9)
        for spec, starts, block in zip(specs, plans, audio, strict=True)
    ]


def _starts(path: Path, info: AudioInfo, spec: WindowSpec, min_seconds: float) -> list[float]:
    starts = plan_segments(
        duration_s=info.duration_s,
        segment_seconds=spec.seconds,
        max_segments=spec.max_windows,
        min_seconds=min(min_seconds, spec.seconds),
        hop_seconds=spec.hop_seconds,
    )
    if not starts or info.duration_s < min_seconds:
        shown = math.floor(info.duration_s * 10) / 10
        raise UnusableAudioError(path, f"too short: {shown:.1f} s (minimum {float(min_seconds)} s)")
    return starts


def load_segments(
    path: Path,
    *,
    params: FeatureParams,
    max_segments: int,
    min_seconds: float,
    hop_seconds: float | None = None,
) -> DecodedTrack:
    """Decode the segments of ``path`` that the rules above select (see the module docstring;
    ``hop_seconds`` shorter than a segment makes them overlap, see ``plan_segments``).

    Returns float32 mono audio [n, params.segment_samples] at params.sample_rate, 1 <= n <=
    max_segments. Raises UnusableAudioError when the track is shorter than ``min_seconds``
    or silent, DecodeError for any other failure.
    """
    spec = WindowSpec(params.segment_seconds, max_segments, hop_seconds)
    info, (windows,) = load_windows(
        path, sample_rate=params.sample_rate, specs=[spec], min_seconds=min_seconds
    )
    return DecodedTrack(info=info, starts_s=windows.starts_s, audio=windows.audio)
