from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.cli.conftest import Invoke, json_of
from tests.cli.library import Song, add_model, home_settings, seed_library
from tests.system_packages import require_program

CHROMIUM = "/usr/bin/chromium"
BAR_BLUE = (0x4C, 0x72, 0xB0)  # the genre chart's bars (cli/reportpage.py)
METRICS = {
    "classes": ["blues", "jazz", "metal"],
    "track_accuracy": 0.8,
    "segment_accuracy": 0.7,
    "baseline": {"track_accuracy": 0.5},
    "n_tracks": 15,
    "track_confusion": [[4, 1, 0], [0, 5, 0], [1, 1, 3]],
    "per_genre": {"jazz": {"precision": 0.71, "recall": 1.0, "f1": 0.83, "support": 5}},
}
SONGS = [
    Song("/m/1.mp3", "jazz", 0.95, "A", "Very sure"),
    Song("/m/2.mp3", "jazz", 0.40, "B", "<script>alert(1)</script> & co"),
    Song("/m/3.mp3", "metal", 0.30, "C", "Undecided"),
    Song("/m/4.mp3", "blues", 0.25, "D", "Mine now"),
    Song("/m/5.mp3", "blues", 0.85, "E", "Sure blues"),
]


def make_report(genrectl: Invoke, tmp_path: Path) -> tuple[Path, str]:
    out = tmp_path / "out" / "report.html"
    summary = json_of(genrectl("report", "-o", str(out), "--lowest", "3", "--json"))
    assert summary["path"] == str(out)
    return out, out.read_text(encoding="utf-8")


def test_report_has_every_section_inline(genrectl: Invoke, tmp_path: Path) -> None:
    seed_library(tmp_path, SONGS, classes=METRICS["classes"], metrics=METRICS)
    genrectl("label", "/m/4.mp3", "metal")
    genrectl("playlist", "create", "Jazz", "--genre", "jazz")
    _, html = make_report(genrectl, tmp_path)
    assert len(re.findall(r'<img class="chart" alt="chart" src="data:image/png;base64,', html)) == 3
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "nothing may load from the network"
    for section in ("summary", "genres", "confidence", "model", "lowest", "playlists"):
        assert f'<section id="{section}">' in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    assert "Confusion matrix by track" in html
    assert "80.0%" in html and "50.0%" in html and "71.0%" in html
    lowest = html.split('<section id="lowest">')[1].split("</section>")[0]
    # Least sure first, only --lowest of them, and not the track you labelled yourself.
    assert lowest.index("Undecided") < lowest.index("&lt;script") < lowest.index("Sure blues")
    assert "Mine now" not in lowest and "Very sure" not in lowest


def test_report_without_metrics_or_model_says_so(genrectl: Invoke, tmp_path: Path) -> None:
    add_model(home_settings(tmp_path), name="idle", promoted=False)  # none promoted
    _, empty = make_report(genrectl, tmp_path)
    assert "No model is promoted: run `genrectl models list`." in empty
    assert "No track is labelled yet" in empty and "<img" not in empty
    seed_library(tmp_path, SONGS[:2], metrics={"track_confusion": [[1]]})  # wrong shape
    _, html = make_report(genrectl, tmp_path)
    assert "The model recorded no confusion matrix." in html and html.count("<img") == 2


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get where the set-up is allowed to."""
    if not os.access(CHROMIUM, os.X_OK):
        require_program("chromium", package="chromium")
    return CHROMIUM


@pytest.mark.slow
def test_report_renders_in_headless_chromium(
    genrectl: Invoke, tmp_path: Path, chromium: str
) -> None:
    from PIL import Image

    seed_library(tmp_path, SONGS, classes=METRICS["classes"], metrics=METRICS)
    page, _ = make_report(genrectl, tmp_path)
    shot = tmp_path / "shot.png"
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,2000", f"--screenshot={shot}", page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape == (2000, 1200, 3)
    # The genre chart, a base64 PNG inside the page, was decoded and drawn.
    bar = np.abs(pixels - np.array(BAR_BLUE)).sum(axis=2) < 12
    assert bar.sum() > 2000, f"{bar.sum()} pixels of the bar colour"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
