"""The genre tree against the library: the tree a session reads, and tracks per node.

A session made by ``db.engine.session_scope`` carries its settings (``session.info``), so
the listing queries read the user's tree (``$GENRECTL_HOME/genres.toml``) wherever they
run; a bare session reads the shipped tree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Model, Prediction, UserLabel
from db.registry import promoted_model
from genrectl.taxonomy import Taxonomy, load_taxonomy, node_counts


def session_taxonomy(session: Session) -> Taxonomy:
    """The genre tree for this session's settings (cached until a file changes)."""
    return load_taxonomy(session.info.get("settings"))


def raw_label_counts(session: Session, model: Model | None = None) -> dict[str, int]:
    """Tracks per raw label: the user's labels, and the model's predictions of the tracks
    the user has not labelled. Two GROUP BYs over index ranges (``user_labels.genre``;
    ``predictions(model_id, genre, ...)``): no track row is read."""
    counts: dict[str, int] = {}
    for genre, n in session.execute(
        select(UserLabel.genre, func.count()).group_by(UserLabel.genre)
    ):
        counts[genre] = counts.get(genre, 0) + n
    model = model or promoted_model(session)
    if model is not None:
        unlabelled = ~select(UserLabel.id).where(UserLabel.track_id == Prediction.track_id).exists()
        for genre, n in session.execute(
            select(Prediction.genre, func.count())
            .where(Prediction.model_id == model.id, unlabelled)
            .group_by(Prediction.genre)
        ):
            counts[genre] = counts.get(genre, 0) + n
    return counts


def genre_tree(session: Session, *, counts: bool = True) -> list[dict[str, Any]]:
    """The tree as nested nodes: ``{"name", "classes", "tracks", "own", "children"}``;
    ``tracks`` counts the node's whole subtree, ``own`` the labels of its own classes.
    Labels the tree does not know (a class of a model trained on your tags, ``unknown``)
    follow as top-level nodes of their own."""
    taxonomy = session_taxonomy(session)
    raw = raw_label_counts(session) if counts else {}
    per_node = node_counts(taxonomy, raw)

    def node(name: str) -> dict[str, Any]:
        key = " ".join(name.split()).lower()
        return {
            "name": name,
            "classes": sorted(c for c, g in taxonomy.classes.items() if g == key),
            "tracks": per_node[name]["tracks"],
            "own": per_node[name]["own"],
            "children": [node(c) for c in taxonomy.children(name)],
        }

    roots = [node(name) for name in taxonomy.children(None)]
    roots += [
        {"name": name, "classes": [], "tracks": c["tracks"], "own": c["own"], "children": []}
        for name, c in per_node.items()
        if name not in taxonomy
    ]
    return roots
