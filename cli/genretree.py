"""``genrectl genres tree``: the user's genre tree with tracks per genre; and the lines
``genrectl show`` prints about a track's place in the tree and its moods."""

from __future__ import annotations

from typing import Any

import click

from cli.app import Context, emit_json, json_option, pass_context
from cli.moodopts import energy_cell, tempo_cell
from db.engine import session_scope
from db.genretree import genre_tree, session_taxonomy
from genrectl.moods import describe_scores
from genrectl.taxonomy import user_taxonomy_path


@click.command("tree")
@click.option("--classes", "show_classes", is_flag=True, help="Show each genre's model classes.")
@json_option
@pass_context
def tree(obj: Context, show_classes: bool, as_json: bool) -> None:
    """Your genre tree: each genre under its parent, with the featurized tracks labelled it
    or a genre below it.

    The shipped tree maps every class the models know (GTZAN's, AudioSet's, the Last.fm
    tags) onto a genre; $GENRECTL_HOME/genres.toml changes it (README: "Your genre tree").
    A parent stands for its subtree everywhere: `tracks list --genre Rock` and
    `playlist create NAME --genre Rock` include Metal and Punk.

    \b
    Examples:
      genrectl genres tree
      genrectl genres tree --classes
      genrectl genres tree --json | jq '.genres[] | {name, tracks}'
    """
    settings = obj.ready_settings()
    with session_scope(settings) as session:
        nodes = genre_tree(session)
        sources = session_taxonomy(session).sources
    if as_json:
        emit_json({"files": list(sources), "genres": nodes})
        return
    from rich.tree import Tree

    from cli.render import stdout

    root = Tree("genres", guide_style="dim")
    for node in nodes:
        _add(root, node, show_classes)
    stdout().print(root)
    user = user_taxonomy_path(settings.home)
    changed = f"changed by {user}" if str(user) in sources else f"edit it in {user}"
    click.echo(f"{sum(n['tracks'] for n in nodes)} labelled tracks; the shipped tree, {changed}")


def _add(parent: Any, node: dict[str, Any], show_classes: bool) -> None:
    label = f"{node['name']}  [bold]{node['tracks']}[/bold]" if node["tracks"] else node["name"]
    if show_classes and node["classes"]:
        label += f"  [dim]{', '.join(node['classes'])}[/dim]"
    branch = parent.add(label)
    for child in node["children"]:
        _add(branch, child, show_classes)


def genre_tree_facts(detail: dict[str, Any]) -> list[list[Any]]:
    """``genre in tree  Heavy metal (Metal > Rock)`` when the tree names the label
    otherwise than the raw class."""
    canonical = detail.get("canonical_genre")
    if not canonical:
        return []
    path = " > ".join(detail.get("genre_parents") or [])
    if canonical == detail["genre"] and not path:
        return []
    return [["genre in tree", f"{canonical} ({path})" if path else canonical]]


def mood_facts(detail: dict[str, Any]) -> list[list[Any]]:
    """The track's moods, tempo and energy, where it has them."""
    facts = []
    if detail.get("moods"):
        facts.append(["moods", describe_scores(detail["moods"]) or "none stands out"])
    if detail.get("tempo_bpm") is not None:
        facts.append(["tempo", f"{tempo_cell(detail['tempo_bpm'])} BPM"])
    if detail.get("energy") is not None:
        facts.append(["energy", energy_cell(detail["energy"])])
    return facts
