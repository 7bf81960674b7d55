"""How far two processes scale on this machine, for the 2-worker target: featurizing N files
(the starter's two encoders, warm, one torch thread) in one process, then two processes of
N files each at once.

    .venv/bin/python bench/bench_parallel.py [--files DIR] [-n 40]

DIR defaults to the mixed library `bench_pipeline.py` caches (~/.cache/genrectl-bench).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def featurize(files: list[Path]) -> float:
    """Seconds to featurize ``files`` after one warm-up file."""
    import torch

    from db.registry import starter_metadata
    from worker.features.compute import featurize_file
    from worker.features.sets import model_feature_sets

    torch.set_num_threads(1)
    meta = starter_metadata()
    assert meta is not None
    sets = model_feature_sets(meta["feature_params"])
    featurize_file(files[0], sets=sets, max_segments=20, min_seconds=3.0)
    start = time.perf_counter()
    for path in files:
        featurize_file(path, sets=sets, max_segments=20, min_seconds=3.0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path.home() / ".cache" / "genrectl-bench" / "mixed-100"
    parser.add_argument("--files", type=Path, default=default)
    parser.add_argument("-n", type=int, default=40)
    args = parser.parse_args()
    files = sorted(args.files.iterdir())
    first, second = files[: args.n], files[args.n : 2 * args.n]
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        alone = pool.apply(featurize, (first,))
    with context.Pool(2) as pool:
        both = [pool.apply_async(featurize, (part,)) for part in (first, second)]
        together = max(r.get() for r in both)
    print(
        f"featurize {args.n} files: one process {alone:.2f} s; two processes of {args.n} at "
        f"once {together:.2f} s (the slower): {2 * alone / together:.2f}x the work per second"
    )


if __name__ == "__main__":
    main()
