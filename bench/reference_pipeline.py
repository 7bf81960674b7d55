"""The reference pipeline genrectl replaces, as the reference notebook runs it: per file
``librosa.load`` (22050 Hz mono), 6 s segments, librosa's mel spectrogram in dB, resized
to 3x224x224 float32, one ``torch.save`` per segment. It only featurizes: no labels.

    .venv/bin/python bench/reference_pipeline.py OUT_DIR FILE...

Run as its own process by ``bench_pipeline.py``, start-up included, as a user would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import librosa
import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_RATE = 22050
SEGMENT = 6 * SAMPLE_RATE


def featurize(path: Path, out: Path) -> int:
    """Segments saved for ``path``."""
    audio, _ = librosa.load(path, sr=SAMPLE_RATE, mono=True)
    saved = 0
    for index in range(len(audio) // SEGMENT):
        segment = audio[index * SEGMENT : (index + 1) * SEGMENT]
        mel = librosa.power_to_db(
            librosa.feature.melspectrogram(y=segment, sr=SAMPLE_RATE, n_fft=2048, hop_length=512)
        )
        image = torch.from_numpy(mel.astype(np.float32))[None, None]
        image = F.interpolate(image, size=(224, 224), mode="bilinear")[0].expand(3, -1, -1)
        torch.save(image.contiguous(), out / f"{path.stem}-{index}.pt")
        saved += 1
    return saved


def main() -> None:
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    segments = sum(featurize(Path(name), out) for name in sys.argv[2:])
    print(f"{segments} segments")


if __name__ == "__main__":
    main()
