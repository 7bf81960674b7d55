"""``tags write`` then ``tags undo`` on a library of real files: time, journal size, and
whether every file came back byte for byte.

    .venv/bin/python bench/bench_tag_undo.py [--files 100] [--seconds 30]

The library: ``--files`` files of ``--seconds`` each, spread over MP3, FLAC, Ogg Vorbis,
Opus and M4A (one rendered per format, then copied and tagged: a title of its own, and on
one file in three a genre and a 40 KB cover picture), labelled "jazz" (0.9) by a seeded
model whose calibrated threshold lets "blues" in as a second genre. Each command runs as
its own process (``python -m cli.main``, start-up included), on SQLite.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from db.engine import dispose_engines, session_scope
from db.models import TagChange
from tests.audio_fixtures import render
from tests.cli.library import Song, seed_library

FORMATS = {".mp3": "mp3", ".flac": "flac", ".ogg": "ogg_vorbis", ".opus": "opus", ".m4a": "m4a_aac"}
COVER = bytes(range(256)) * 160


def _tag(path: Path, index: int) -> None:
    import mutagen
    from mutagen.flac import Picture
    from mutagen.id3 import APIC, ID3, TCON, TIT2
    from mutagen.mp4 import MP4Cover

    covered = index % 3 == 0
    if path.suffix == ".mp3":
        tags = ID3()
        tags.add(TIT2(encoding=3, text=[f"Song {index}"]))
        if covered:
            tags.add(TCON(encoding=3, text=["Rock"]))
            tags.add(APIC(encoding=3, mime="image/png", type=3, desc="", data=COVER))
        tags.save(path)
        return
    audio = mutagen.File(path)
    if path.suffix == ".m4a":
        audio["\xa9nam"] = [f"Song {index}"]
        if covered:
            audio["\xa9gen"] = ["Rock"]
            audio["covr"] = [MP4Cover(COVER, imageformat=MP4Cover.FORMAT_PNG)]
    else:
        audio["title"] = [f"Song {index}"]
        if covered:
            audio["genre"] = ["Rock"]
        if covered and path.suffix == ".flac":
            picture = Picture()
            picture.type, picture.mime, picture.data = 3, "image/png", COVER
            audio.add_picture(picture)
    audio.save()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(home: Path, *args: str) -> float:
    env = {**os.environ, "GENRECTL_HOME": str(home)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"genrectl {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-tag-undo-"))
    try:
        sources = {s: render(root / "src", n, seconds=args.seconds) for s, n in FORMATS.items()}
        music = root / "music"
        music.mkdir()
        files = []
        for index in range(args.files):
            suffix = list(FORMATS)[index % len(FORMATS)]
            path = music / f"{index:04d}{suffix}"
            shutil.copyfile(sources[suffix], path)
            _tag(path, index)
            files.append(path)
        songs = [Song(str(p), "jazz", 0.9) for p in files]
        metrics = {"class_thresholds": {"blues": 0.02}}
        settings, _ = seed_library(root, songs, as_featurized=True, metrics=metrics)
        dispose_engines()
        home = root / "home"
        before = {p: _sha256(p) for p in files}
        size = sum(p.stat().st_size for p in files)
        write_s = _run(home, "tags", "write", "--overwrite", "--max-genres", "2")
        changed = sum(_sha256(p) != before[p] for p in files)
        with session_scope(settings) as session:
            journal = session.scalar(select(func.sum(func.length(TagChange.patch)))) or 0
            rows = session.scalar(select(func.count(TagChange.id))) or 0
        dispose_engines()
        undo_s = _run(home, "tags", "undo")
        identical = sum(_sha256(p) == before[p] for p in files)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.files} files of {args.seconds:g} s, {size / 1e6:.1f} MB in all")
    print(f"tags write --overwrite --max-genres 2   {write_s:6.2f} s   {changed} files changed")
    print(f"journal                                 {rows} rows, patches {journal / 1e3:.1f} KB")
    print(f"tags undo                               {undo_s:6.2f} s   {identical} files identical")


if __name__ == "__main__":
    main()
