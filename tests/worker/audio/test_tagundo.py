from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import mutagen
import pytest

from tests.conftest import RenderAudio
from worker.audio.tagundo import (
    ALREADY,
    FAILED,
    FORCED,
    REFUSED,
    RESTORED,
    RecordedChange,
    WriteRecord,
    undo_change,
    write_reversibly,
)
from worker.audio.tagwrite import TagWriteError, read_values


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _recorded(path: Path, record: WriteRecord) -> RecordedChange:
    return RecordedChange(
        path=path,
        patch=record.patch,
        sha256_before=record.before.sha256,
        sha256_after=record.after.sha256,
        mtime_ns_before=record.before.mtime_ns,
        old_values=record.old_values,
    )


@pytest.mark.parametrize("name", ["wav_pcm16", "aiff", "wma", "m4a_alac"])
def test_other_formats_come_back_byte_for_byte(
    render_audio: RenderAudio, tmp_path: Path, name: str
) -> None:
    source = render_audio(name, seconds=2.0)
    path = Path(shutil.copyfile(source, tmp_path / source.name))
    before, mtime = _sha256(path), path.stat().st_mtime_ns
    seen: list[WriteRecord] = []
    record = write_reversibly(path, "genre", ["jazz", "blues"], seen.append)
    assert seen == [record] and read_values(path, "genre") == ["jazz", "blues"]
    assert record.after.sha256 == _sha256(path) != before == record.before.sha256
    assert undo_change(_recorded(path, record), dry_run=True).action == RESTORED
    assert _sha256(path) == record.after.sha256  # a dry run changes nothing
    outcome = undo_change(_recorded(path, record))
    assert outcome.action == RESTORED and outcome.stamp is not None
    assert (_sha256(path), path.stat().st_mtime_ns) == (before, mtime)
    assert outcome.stamp.sha256 == before and outcome.stamp.mtime_ns == mtime
    assert undo_change(_recorded(path, record)).action == ALREADY


def test_a_failing_journal_leaves_the_file_as_it_was(
    render_audio: RenderAudio, tmp_path: Path
) -> None:
    path = Path(shutil.copyfile(render_audio("flac", seconds=2.0), tmp_path / "a.flac"))
    before = _sha256(path)

    def journal(record: WriteRecord) -> None:
        raise TagWriteError(path, "the database is gone")

    with pytest.raises(TagWriteError, match="the database is gone"):
        write_reversibly(path, "genre", ["jazz"], journal)
    assert _sha256(path) == before and sorted(tmp_path.iterdir()) == [path]


def test_changed_since_is_refused_unless_forced(render_audio: RenderAudio, tmp_path: Path) -> None:
    path = Path(shutil.copyfile(render_audio("ogg_vorbis", seconds=2.0), tmp_path / "a.ogg"))
    record = write_reversibly(path, "genre", ["jazz"], lambda record: None)
    audio = mutagen.File(path)
    audio["title"] = ["by hand"]
    audio.save()
    changed = _sha256(path)
    refused = undo_change(_recorded(path, record))
    assert refused.action == REFUSED and "changed since" in (refused.reason or "")
    assert _sha256(path) == changed
    assert undo_change(_recorded(path, record), force=True, dry_run=True).action == FORCED
    assert _sha256(path) == changed
    forced = undo_change(_recorded(path, record), force=True)
    assert forced.action == FORCED and forced.stamp is not None
    audio = mutagen.File(path)
    assert "genre" not in audio and audio["title"] == ["by hand"]


def test_a_missing_file_or_a_bad_record_is_reported(
    render_audio: RenderAudio, tmp_path: Path
) -> None:
    path = Path(shutil.copyfile(render_audio("mp3", seconds=2.0), tmp_path / "a.mp3"))
    record = write_reversibly(path, "genre", ["jazz"], lambda record: None)
    bad = RecordedChange(path, b"junk", record.before.sha256, record.after.sha256, 0, {})
    failed = undo_change(bad)
    assert failed.action == FAILED and "corrupt patch" in (failed.reason or "")
    path.unlink()
    gone = undo_change(_recorded(path, record))
    assert gone.action == REFUSED and "file not found" in (gone.reason or "")
