"""A compact record of how to turn a file's rewritten bytes back into its original bytes.

``tags write`` keeps one per file in the tag journal, so ``tags undo`` gives back the
original file byte for byte, whatever the tag library would do on a second rewrite (frame
order, padding, ID3 version, Ogg page layout, MP4 atom layout).

A tag rewrite changes one region of a file (the tag, the FLAC metadata blocks, an Ogg
comment page, the MP4 ``moov`` atom) and may shift what follows it. The patch keeps the
length of the common head and tail of both versions and, for the region between them, the
old bytes as copies of runs of the new region plus the few bytes found nowhere in it: a
cover picture moved by a bigger tag costs a copy instruction, not its size.

Format (zlib-compressed): a header ``>QQQ`` (head, tail, length of the old middle), then
instructions: ``C`` ``>QQ`` (offset in the new middle, length) or ``L`` ``>Q`` + bytes.
"""

from __future__ import annotations

import struct
import zlib

_HEADER = struct.Struct(">QQQ")
_COPY = struct.Struct(">QQ")
_LEN = struct.Struct(">Q")
_BLOCK = 32  # the shortest run worth a copy is found; shorter ones are stored as bytes
_CHUNK = 1 << 16


class PatchError(ValueError):
    """A patch does not fit the bytes it is applied to (corrupt, or another file)."""


def _common_head(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i : i + _CHUNK] == b[i : i + _CHUNK]:
        i += _CHUNK
    i = min(i, n)
    end = min(i + _CHUNK, n)
    while i < end and a[i] == b[i]:
        i += 1
    return i


def _common_tail(a: bytes, b: bytes, limit: int) -> int:
    """How many bytes ``a`` and ``b`` share at their ends, at most ``limit``."""
    i = 0
    while (
        i + _CHUNK <= limit
        and a[len(a) - i - _CHUNK : len(a) - i] == b[len(b) - i - _CHUNK : len(b) - i]
    ):
        i += _CHUNK
    while i < limit and a[len(a) - i - 1] == b[len(b) - i - 1]:
        i += 1
    return i


def _run_length(a: bytes, i: int, b: bytes, j: int) -> int:
    """How many bytes from ``a[i]`` equal those from ``b[j]``."""
    n = 0
    limit = min(len(a) - i, len(b) - j)
    while n + _CHUNK <= limit and a[i + n : i + n + _CHUNK] == b[j + n : j + n + _CHUNK]:
        n += _CHUNK
    while n < limit and a[i + n] == b[j + n]:
        n += 1
    return n


def _instructions(old: bytes, new: bytes) -> bytes:
    """``old`` as copies of runs of ``new`` and literal bytes."""
    index: dict[bytes, int] = {}
    for j in range(0, len(new) - _BLOCK + 1, _BLOCK):
        index.setdefault(new[j : j + _BLOCK], j)
    out = bytearray()
    literal = bytearray()
    i = 0
    while i < len(old):
        found = index.get(old[i : i + _BLOCK]) if i + _BLOCK <= len(old) else None
        if found is None:
            literal.append(old[i])
            i += 1
            continue
        j = found
        back = 0  # the run may start before the block that found it
        while back < len(literal) and j - back > 0 and literal[-1 - back] == new[j - back - 1]:
            back += 1
        if back:
            del literal[len(literal) - back :]
        if literal:
            out += b"L" + _LEN.pack(len(literal)) + literal
            literal.clear()
        length = back + _run_length(old, i, new, j)
        out += b"C" + _COPY.pack(j - back, length)
        i += length - back
    if literal:
        out += b"L" + _LEN.pack(len(literal)) + literal
    return bytes(out)


def make_patch(old: bytes, new: bytes) -> bytes:
    """A patch that rebuilds ``old`` from ``new`` (see ``apply_patch``)."""
    head = _common_head(old, new)
    tail = _common_tail(old, new, min(len(old), len(new)) - head)
    old_mid = old[head : len(old) - tail]
    new_mid = new[head : len(new) - tail]
    body = _HEADER.pack(head, tail, len(old_mid)) + _instructions(old_mid, new_mid)
    return zlib.compress(body, 9)


def apply_patch(patch: bytes, new: bytes) -> bytes:
    """The original bytes, rebuilt from ``new`` with a patch of ``make_patch(old, new)``.

    Raises PatchError when the patch is corrupt or does not fit ``new``."""
    try:
        body = zlib.decompress(patch)
        head, tail, size = _HEADER.unpack_from(body)
    except (zlib.error, struct.error) as exc:
        raise PatchError(f"corrupt patch: {exc}") from None
    if head + tail > len(new):
        raise PatchError(f"patch is for a file of at least {head + tail} bytes, not {len(new)}")
    new_mid = new[head : len(new) - tail]
    middle = bytearray()
    at = _HEADER.size
    try:
        while at < len(body):
            kind = body[at : at + 1]
            if kind == b"C":
                offset, length = _COPY.unpack_from(body, at + 1)
                if offset + length > len(new_mid):
                    raise PatchError("patch copies bytes beyond the rewritten region")
                middle += new_mid[offset : offset + length]
                at += 1 + _COPY.size
            elif kind == b"L":
                (length,) = _LEN.unpack_from(body, at + 1)
                middle += body[at + 1 + _LEN.size : at + 1 + _LEN.size + length]
                at += 1 + _LEN.size + length
            else:
                raise PatchError(f"corrupt patch: instruction {kind!r} at byte {at}")
    except struct.error as exc:
        raise PatchError(f"corrupt patch: {exc}") from None
    if len(middle) != size:
        raise PatchError(f"patch rebuilt {len(middle)} bytes of {size}")
    return new[:head] + bytes(middle) + new[len(new) - tail :]
