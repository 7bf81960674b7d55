"""The model registry: queries over the ``models`` table."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Model, utcnow
from db.upsert import insert_ignore
from genrectl.errors import NotFoundError
from genrectl.settings import Settings


def promoted_model(session: Session) -> Model | None:
    return session.scalar(select(Model).where(Model.promoted.is_(True)).limit(1))


def find_model(session: Session, name_or_id: str) -> Model:
    query = select(Model).where(Model.name == name_or_id)
    if name_or_id.isdigit():
        query = select(Model).where((Model.name == name_or_id) | (Model.id == int(name_or_id)))
    model = session.scalar(query.limit(1))
    if model is None:
        raise NotFoundError(f"no model named {name_or_id!r}: run `genrectl models list`")
    return model


def promote(session: Session, model: Model) -> None:
    """Make ``model`` the one that labels the library (and only it)."""
    session.execute(update(Model).where(Model.id != model.id).values(promoted=False))
    model.promoted = True


def list_models(session: Session) -> list[Model]:
    return list(session.scalars(select(Model).order_by(Model.created_at, Model.id)))


STARTER_DIR = Path(__file__).resolve().parent.parent / "genrectl" / "models"


def starter_metadata() -> dict[str, Any] | None:
    """The bundled starter model's registry metadata (``starter.json``), None if absent."""
    meta_file = STARTER_DIR / "starter.json"
    if not meta_file.exists():
        return None
    meta: dict[str, Any] = json.loads(meta_file.read_text())
    return meta


def ensure_starter(session: Session, settings: Settings) -> Model | None:
    """The promoted model; on first use, register and promote the bundled starter model.

    The starter's metadata sits beside it in ``starter.json``, so registering it needs no torch.
    """
    promoted = promoted_model(session)
    if promoted is not None or not settings.starter_model:
        return promoted
    if session.scalar(select(Model.id).limit(1)) is not None:
        return promoted
    meta = starter_metadata()
    if meta is None:
        return None
    destination = settings.model_dir / f"{meta['name']}.pt"
    if not destination.exists():
        destination.parent.mkdir(parents=True, exist_ok=True)
        tmp = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
        shutil.copyfile(STARTER_DIR / "starter.pt", tmp)
        tmp.replace(destination)
    insert_ignore(
        session,
        Model,
        [
            {
                "name": meta["name"],
                "arch": meta["arch"],
                "input_size": meta["input_size"],
                "classes": meta["classes"],
                "feature_version": meta["feature_version"],
                "feature_params": meta["feature_params"],
                "path": str(destination),
                "sha256": meta["sha256"],
                "training": meta["training"],
                "metrics": meta["metrics"],
                "promoted": True,
                "created_at": utcnow(),
            }
        ],
        index_elements=["name"],
    )
    return promoted_model(session)
