"""The genre tree: the shipped file covers every class the models know; the user's file
changes it; a bad file is one line naming the file and the entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genrectl.errors import ConfigError
from genrectl.taxonomy import DEFAULT_TAXONOMY, Taxonomy, load_taxonomy, node_counts, normalize
from worker.inference.describe import FIRST_GENRE, LAST_GENRE
from worker.models.encoders import class_names
from worker.models.zeroshot import MN04_MAP, MSD_FCN_MAP

STARTER = Path(DEFAULT_TAXONOMY).parent / "models" / "starter.json"


def _known_classes() -> set[str]:
    """Every genre class the encoders, the zero-shot maps and the starter know."""
    names = class_names("mn04")
    block = names[names.index(FIRST_GENRE) : names.index(LAST_GENRE) + 1]
    out = set(block) | {"Soundtrack music", "Video game music", "Christmas music", "Dance music"}
    for mapping in (MN04_MAP, MSD_FCN_MAP):
        out |= set(mapping) | {c for classes in mapping.values() for c in classes}
    out |= set(json.loads(STARTER.read_text())["classes"])
    return out - {"instrumental"}  # msd_fcn's stand-in for classical is no genre


def test_the_shipped_tree_maps_every_class_the_models_know() -> None:
    tree = load_taxonomy(home=None)
    unmapped = sorted(c for c in _known_classes() if normalize(c) not in tree.classes)
    assert unmapped == []
    assert tree.canonical("Heavy metal") == "Heavy metal"
    assert tree.parents("Heavy metal") == ["Metal", "Rock"]
    assert tree.canonical("hiphop") == tree.canonical("Hip hop music") == "Hip hop"
    assert tree.canonical("Hip-Hop") == "Hip hop"


def test_a_parent_includes_its_subtree_and_a_class_stands_for_its_genre() -> None:
    tree = load_taxonomy(home=None)
    assert {"Metal", "Heavy metal", "Punk", "Grunge"} <= tree.descendants("Rock")
    assert "Rock" not in tree.descendants("Rock")
    rock = tree.raw_classes("rock")  # names compare case-insensitively
    assert {"rock", "rock music", "metal", "heavy metal", "punk rock", "grunge"} <= rock
    assert "pop" not in rock
    assert tree.raw_classes("METAL") == {"metal", "heavy metal"}
    assert tree.raw_classes("rock music") == rock  # a raw class: its genre's subtree
    assert tree.raw_classes("shoegaze") == {"shoegaze"}  # unknown: itself alone
    assert tree.canonical("shoegaze") == "shoegaze"


def test_the_users_file_moves_classes_and_adds_genres(tmp_path: Path) -> None:
    (tmp_path / "genres.toml").write_text(
        '[genres.Metal]\nparent = ""\n\n'
        '[genres."Nu metal"]\nparent = "Metal"\nclasses = ["nu metal"]\n\n'
        '[genres.Alternative]\nclasses = ["grunge", "alternative"]\n',
        encoding="utf-8",
    )
    tree = load_taxonomy(home=tmp_path)
    assert tree.parents("Heavy metal") == ["Metal"]  # Metal is top-level now
    assert "metal" not in tree.raw_classes("Rock")
    assert tree.parents("nu metal") == ["Metal"]
    assert tree.canonical("grunge") == "Alternative"
    assert "grunge" not in tree.raw_classes("Rock")
    assert tree.sources[-1] == str(tmp_path / "genres.toml")
    # Edited again: read again (cached by the file's time and size).
    (tmp_path / "genres.toml").write_text('[genres.Grunge]\nparent = "Pop"\n', encoding="utf-8")
    assert load_taxonomy(home=tmp_path).parents("Grunge") == ["Pop"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[genres.Metal]\nparent = "Rokc"\n', "genre 'Metal': parent 'Rokc' is not a genre"),
        (
            '[genres.Rock]\nparent = "Heavy metal"\n',
            "genre 'Rock': its parents make a cycle (Rock -> Heavy metal -> Metal -> Rock)",
        ),
        (
            "[genres.Shoegaze]\n[genres.shoegaze]\n",
            "genre 'shoegaze': duplicate of genre 'Shoegaze'",
        ),
        (
            '[genres.A]\nclasses = ["x"]\n[genres.B]\nclasses = ["X"]\n',
            "genre 'B': class 'x' is also under 'A'",
        ),
        ('[genres.A]\ncolour = "red"\n', "genre 'A': unknown key 'colour'"),
        ('[genres.A]\nclasses = "x"\n', "genre 'A': classes must be a list of class names"),
        ("[genres.A\n", "not valid TOML"),
        ("[moods.happy]\n", "unknown table 'moods'"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_entry(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "genres.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_taxonomy(home=tmp_path)
    assert str(raised.value).startswith(f"genres file '{path}': ")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_node_counts_add_up_the_subtree() -> None:
    tree = load_taxonomy(home=None)
    counts = node_counts(tree, {"metal": 3, "heavy metal": 2, "rock": 1, "shoegaze": 4})
    assert counts["Heavy metal"] == {"own": 2, "tracks": 2}
    assert counts["Metal"] == {"own": 3, "tracks": 5}
    assert counts["Rock"] == {"own": 1, "tracks": 6}
    assert counts["shoegaze"] == {"own": 4, "tracks": 4}


def test_walk_is_depth_first_in_file_order() -> None:
    tree: Taxonomy = load_taxonomy(home=None)
    walked = list(tree.walk())
    assert walked[:3] == [(0, "Rock"), (1, "Metal"), (2, "Heavy metal")]
    assert len(walked) == len(tree.names)
