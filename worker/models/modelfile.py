"""Model files: weights plus everything needed to use them, with no pickled classes.

A model file is ``torch.save`` of a dict of plain values (tensors, str, int, float, bool,
None, lists and dicts of them), so it loads with ``torch.load(weights_only=True)``: a file
that would need arbitrary code to unpickle is refused. Files are written to a temporary
name and renamed into place; their sha256 is returned to be recorded and checked on load.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genrectl.errors import ModelError
from genrectl.files import file_sha256
from worker.models.cnn import MelClassifier, build_model
from worker.models.heads import GenreHead

FORMAT = "genrectl-model"
# 2 added genre heads over encoder outputs ("head": their description); 1 is still read.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class LoadedModel:
    """A model rebuilt from a file, in eval mode on the CPU, and what the file says of it.

    ``model`` is a MelClassifier (reference mel in) or a GenreHead (encoder outputs in).
    """

    model: MelClassifier | GenreHead
    arch: str
    input_size: str
    classes: list[str]
    feature_params: dict[str, Any]
    metrics: dict[str, Any]
    normalisation: dict[str, Any]
    training: dict[str, Any]
    sha256: str
    path: Path


def _plain(value: Any, where: str) -> Any:
    """``value`` as types ``weights_only`` loading accepts; numpy values become Python ones."""
    if isinstance(value, np.generic | np.ndarray):  # before float: np.float64 is a float
        return value.tolist()
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ModelError(f"{where} holds a {type(value).__name__}, which a model file cannot store")


def save_model(
    path: Path,
    *,
    model: nn.Module,
    arch: str,
    input_size: str,
    classes: list[str],
    feature_params: dict[str, Any],
    metrics: dict[str, Any],
    normalisation: dict[str, Any],
    training: dict[str, Any],
) -> str:
    """Write ``model`` (from ``build_model``, or a GenreHead) and its description to
    ``path``; return the file's sha256. ``normalisation`` is informative: the constants in
    use are in the weights."""
    if not isinstance(model, MelClassifier | GenreHead):
        raise ModelError(f"can only save models from build_model, not {type(model).__name__}")
    shape = getattr(model, "input_size", input_size)
    if (model.arch, shape, model.n_classes) != (arch, input_size, len(classes)):
        raise ModelError(
            f"model is {model.arch}/{model.input_size} with {model.n_classes} classes, but "
            f"arch={arch!r}, input_size={input_size!r} and {len(classes)} classes were given"
        )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "input_size": input_size,
        "mel_shape": list(model.mel_shape) if isinstance(model, MelClassifier) else None,
        "head": model.config if isinstance(model, GenreHead) else None,
        "classes": [str(c) for c in classes],
        "feature_params": _plain(feature_params, "feature_params"),
        "metrics": _plain(metrics, "metrics"),
        "normalisation": _plain(normalisation, "normalisation"),
        "training": _plain(training, "training"),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return file_sha256(path)


def _short_reason(exc: Exception) -> str:
    """The line of torch's long weights_only refusal that names what was refused."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    refused = [line for line in lines if "WeightsUnpickler error" in line]
    return (refused or lines or [type(exc).__name__])[0]


def _read(path: Path, data: bytes) -> dict[str, Any]:
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refusals (UnpicklingError) and corrupt files alike
        raise ModelError(
            f"refusing model file '{path}': it is not a plain-weights genrectl model "
            f"({_short_reason(exc)})"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"'{path}' is not a genrectl model file")
    if payload.get("format_version") not in READABLE_VERSIONS:
        raise ModelError(
            f"model file '{path}' has format version {payload.get('format_version')}; "
            f"this genrectl reads versions {', '.join(map(str, READABLE_VERSIONS))}"
        )
    return payload


def _build(payload: dict[str, Any]) -> MelClassifier | GenreHead:
    if payload.get("head"):
        return GenreHead.from_config(payload["head"])
    n_mels, n_frames = payload["mel_shape"]
    return build_model(
        arch=payload["arch"],
        n_classes=len(payload["classes"]),
        input_size=payload["input_size"],
        n_mels=n_mels,
        n_frames=n_frames,
    )


def load_model(path: Path, *, expected_sha256: str | None = None) -> LoadedModel:
    """Load a model file written by ``save_model``.

    Raises ``ModelError`` if the file's sha256 differs from ``expected_sha256`` (checked
    before anything is unpickled), if ``weights_only`` loading refuses it, or if its weights
    do not fit its declared architecture.
    """
    try:
        data = path.read_bytes()  # hash and parse the same bytes, not the file twice
    except OSError as exc:
        raise ModelError(f"cannot read model file '{path}': {exc.strerror}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and actual != expected_sha256.lower():
        raise ModelError(
            f"model file '{path}' has sha256 {actual}, expected {expected_sha256}; "
            "it was changed or replaced since it was recorded"
        )
    payload = _read(path, data)
    model = _build(payload)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ModelError(f"weights in '{path}' do not fit {payload['arch']}: {exc}") from exc
    model.eval()
    return LoadedModel(
        model=model,
        arch=payload["arch"],
        input_size=payload["input_size"],
        classes=list(payload["classes"]),
        feature_params=payload["feature_params"],
        metrics=payload["metrics"],
        normalisation=payload["normalisation"],
        training=payload["training"],
        sha256=actual,
        path=path,
    )
