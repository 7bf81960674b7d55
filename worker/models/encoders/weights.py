"""Reading a shipped encoder's weights: the file must be the one genrectl ships."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from genrectl.errors import ModelError


def read_weights(path: Path, *, expected_sha256: str, what: str) -> dict[str, Any]:
    """The state dict in ``path``, read with ``weights_only=True`` after its sha256 is
    checked against ``expected_sha256``. Raises ModelError naming the file and the expected
    sha256 when it is missing, altered or not a state dict: never a silent fallback."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(
            f"cannot read {what} weights '{path}' ({exc.strerror}); it should be the file "
            f"with sha256 {expected_sha256} shipped in genrectl/models/pretrained/"
        ) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256.lower():
        raise ModelError(
            f"{what} weights '{path}' have sha256 {actual}, expected {expected_sha256}: the "
            "file was changed or replaced; restore it from the genrectl repository"
        )
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refusals and corrupt files alike
        raise ModelError(f"cannot read {what} weights '{path}': {exc}") from exc
    if not isinstance(state, dict):
        raise ModelError(f"{what} weights '{path}' are not a state dict")
    return state
