from __future__ import annotations

import random
import zlib

import pytest

from worker.audio.bytepatch import PatchError, apply_patch, make_patch


def _edited(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(0, 4)):
        at, cut = rng.randint(0, len(out)), rng.randint(0, 200)
        out[at : at + cut] = rng.randbytes(rng.randint(0, 300))
    return bytes(out)


def test_any_edit_is_taken_back_exactly() -> None:
    rng = random.Random(0)
    for _ in range(200):
        base = rng.randbytes(rng.randint(0, 3000))
        old, new = _edited(rng, base), _edited(rng, base)
        assert apply_patch(make_patch(old, new), new) == old


def test_a_moved_cover_costs_a_copy_not_its_size() -> None:
    rng = random.Random(1)
    cover, audio = rng.randbytes(500_000), rng.randbytes(800_000)
    old = b"ID3\x04\x00\x00\x00\x10" + b"TIT2 Song" + cover + bytes(1024) + audio
    new = b"ID3\x04\x00\x00\x00\x11" + b"TIT2 Song" + b"TCON jazz" + cover + bytes(1015) + audio
    patch = make_patch(old, new)
    assert apply_patch(patch, new) == old
    assert len(patch) < 200


def test_a_patch_that_does_not_fit_is_refused() -> None:
    patch = make_patch(b"a" * 100 + b"old" + b"z" * 100, b"a" * 100 + b"new!" + b"z" * 100)
    with pytest.raises(PatchError, match="at least 200 bytes"):
        apply_patch(patch, b"short")
    with pytest.raises(PatchError, match="corrupt patch"):
        apply_patch(b"not a patch", b"a" * 300)
    with pytest.raises(PatchError, match="corrupt patch"):
        apply_patch(zlib.compress(b"\x00" * 24 + b"X"), b"a" * 300)
