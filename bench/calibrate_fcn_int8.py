"""Find msd_fcn's int8 activation parameters on real music and write them beside its
weights (``genrectl/models/pretrained/msd_fcn_int8.json``, committed).

    .venv/bin/python bench/calibrate_fcn_int8.py GTZAN_DIR [--tracks 100]

Each track goes through featurizing's own path (decode to 22050 Hz, the msd_fcn window,
peak normalisation, resampling to 16 kHz), then PyTorch's histogram observer runs over the
input of each quantized block (``worker.models.encoders.int8``). Deterministic for a given
set of tracks; re-run only when the weights, the front end or the blocks change (and bump
``ENCODER_CODE_VERSION`` then: stored int8 features would change).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.audio.decode import load_windows, resample
from worker.features.encoder import _runtime, msd_fcn_features
from worker.models.encoders import encoder_spec, int8


def windows(paths: list[Path]) -> torch.Tensor:
    """msd_fcn's input window of each track, as featurizing prepares it: [n, 464000]."""
    params = msd_fcn_features()
    rate = encoder_spec("msd_fcn").sample_rate
    rows = []
    for path in paths:
        _, (decoded,) = load_windows(
            path, sample_rate=params.sample_rate, specs=[params.window_spec()], min_seconds=3.0
        )
        audio = decoded.audio[0]
        assert params.peak_dbfs is not None
        audio = audio * np.float32(10 ** (params.peak_dbfs / 20) / np.abs(audio).max())
        rows.append(resample(audio, rate=params.sample_rate, target_rate=rate))
    return torch.from_numpy(np.stack(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gtzan", type=Path, help="GTZAN-layout folder (a folder per genre)")
    parser.add_argument("--tracks", type=int, default=100)
    parser.add_argument("--out", type=Path, default=int8.PARAMS_FILE)
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = sorted(args.gtzan.glob("*/*.wav"))
    paths = paths[:: max(1, len(paths) // args.tracks)][: args.tracks]
    model = _runtime("msd_fcn", encoder_spec("msd_fcn").sha256)
    params = int8.calibrate(model, windows(paths))
    args.out.write_text(json.dumps(params, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out} from {len(paths)} tracks")


if __name__ == "__main__":
    main()
