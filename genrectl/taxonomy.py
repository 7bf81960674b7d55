"""The user's genre tree: model classes under the user's genre names, with parents.

A label keeps the model's raw class ("heavy metal", "hiphop", "Hip hop music"); the tree
says what genre that is ("Heavy metal", under Metal, under Rock). The canonical name is
derived when a label is read, never stored: an edit of the file shows at once, and a query
for a parent ("Rock") becomes a test of the raw classes of its whole subtree, which the
predictions index answers (``db.listing``).

The shipped tree is ``genrectl/taxonomy.toml``; ``$GENRECTL_HOME/genres.toml``, in the same
format, changes it: a genre it names takes the parent and classes it gives (``parent = ""``:
top level), the classes it lists leave whichever genre had them, and new names add genres.
Pure Python (tomllib): the CLI imports it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrectl.errors import ConfigError

DEFAULT_TAXONOMY = Path(__file__).resolve().parent / "taxonomy.toml"
USER_TAXONOMY_FILE = "genres.toml"
_KEYS = frozenset({"parent", "classes"})


def normalize(name: str) -> str:
    """Names and classes compare lower-cased, spaces collapsed (as ``db.listing`` does)."""
    return " ".join(name.split()).lower()


@dataclass(frozen=True)
class _Entry:
    """One ``[genres."Name"]`` table as read: ``parent`` None when the file leaves it out."""

    name: str
    parent: str | None
    classes: tuple[str, ...] | None


@dataclass
class Taxonomy:
    """A forest of genres. Names keep their spelling for display and compare normalized;
    ``classes`` maps each normalized raw class to the genre it means."""

    names: dict[str, str] = field(default_factory=dict)  # normalized -> display name
    parent_of: dict[str, str | None] = field(default_factory=dict)  # normalized -> normalized
    classes: dict[str, str] = field(default_factory=dict)  # raw class -> normalized name
    sources: tuple[str, ...] = ()  # the files read, shipped first

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize(name) in self.names

    def display(self, name: str) -> str:
        """``name``'s spelling in the tree; ``name`` as given when it is not a genre."""
        return self.names.get(normalize(name), name)

    def canonical(self, raw_class: str) -> str:
        """The genre a raw class means ("heavy metal" -> "Heavy metal", "hiphop" -> "Hip
        hop"); a class the tree does not know stands for itself, as given."""
        key = normalize(raw_class)
        found = self.classes.get(key)
        if found is None and key in self.names:
            found = key
        return raw_class if found is None else self.names[found]

    def parents(self, name: str) -> list[str]:
        """The ancestors of genre ``name``, nearest first (["Metal", "Rock"]); [] for a
        top-level genre or a name the tree does not know."""
        out, key = [], self.parent_of.get(normalize(name))
        while key is not None:
            out.append(self.names[key])
            key = self.parent_of[key]
        return out

    def children(self, name: str | None) -> list[str]:
        """The genres directly under ``name`` (None: the top level), in the tree's order."""
        key = None if name is None else normalize(name)
        return [self.names[k] for k, p in self.parent_of.items() if p == key]

    def descendants(self, name: str) -> set[str]:
        """Every genre below ``name`` (not ``name`` itself)."""
        out: set[str] = set()
        stack = self.children(name)
        while stack:
            child = stack.pop()
            out.add(child)
            stack.extend(self.children(child))
        return out

    def raw_classes(self, name: str) -> set[str]:
        """The normalized raw classes meaning ``name`` or a genre below it, the genres' own
        names among them. A raw class stands for its genre ("hip hop music": every class of
        Hip hop); a name the tree does not know, for itself alone."""
        key = normalize(name)
        key = key if key in self.names else self.classes.get(key, key)
        if key not in self.names:
            return {key}
        keys = {key} | {normalize(d) for d in self.descendants(key)}
        # A genre's name means it unless another genre claims that class (as ``canonical``).
        names = {k for k in keys if self.classes.get(k, k) in keys}
        return names | {c for c, genre in self.classes.items() if genre in keys}

    def expand(self, names: Iterable[str]) -> list[str]:
        """``raw_classes`` of each of ``names``, together, sorted: what a query tests."""
        out: set[str] = set()
        for name in names:
            out |= self.raw_classes(name)
        return sorted(out)

    def walk(self) -> Iterator[tuple[int, str]]:
        """(depth, name) of every genre, depth first in the tree's order."""
        stack = [(0, n) for n in reversed(self.children(None))]
        while stack:
            depth, name = stack.pop()
            yield depth, name
            stack.extend((depth + 1, c) for c in reversed(self.children(name)))


def _fail(path: Path, message: str) -> ConfigError:
    return ConfigError(f"genres file '{path}': {message}")


def _read(path: Path) -> list[_Entry]:
    """The entries of one taxonomy file, each checked on its own."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise _fail(path, f"cannot read it: {exc.strerror}") from None
    unknown = sorted(set(data) - {"genres"})
    if unknown:
        raise _fail(path, f'unknown table {unknown[0]!r}: genres go in [genres."Name"]')
    genres = data.get("genres", {})
    if not isinstance(genres, dict):
        raise _fail(path, 'genres must be tables: [genres."Heavy metal"]')
    entries: list[_Entry] = []
    seen: dict[str, str] = {}
    for name, body in genres.items():
        entries.append(_entry(path, name, body))
        key = normalize(name)
        if not key:
            raise _fail(path, f"genre {name!r}: a genre needs a name")
        if key in seen:
            raise _fail(path, f"genre {name!r}: duplicate of genre {seen[key]!r}")
        seen[key] = name
    claimed: dict[str, str] = {}
    for entry in entries:
        for raw in entry.classes or ():
            other = claimed.setdefault(raw, entry.name)
            if other != entry.name:
                raise _fail(path, f"genre {entry.name!r}: class {raw!r} is also under {other!r}")
    return entries


def _entry(path: Path, name: str, body: Any) -> _Entry:
    if not isinstance(body, dict):
        raise _fail(path, f"genre {name!r}: must be a table with parent and classes")
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise _fail(path, f"genre {name!r}: unknown key {unknown[0]!r} (known: parent, classes)")
    parent = body.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise _fail(path, f"genre {name!r}: parent must be a genre's name, not {parent!r}")
    classes = body.get("classes")
    if classes is not None and not (
        isinstance(classes, list) and all(isinstance(c, str) and c.strip() for c in classes)
    ):
        raise _fail(path, f"genre {name!r}: classes must be a list of class names")
    return _Entry(
        name=" ".join(name.split()),
        parent=parent,
        classes=None if classes is None else tuple(normalize(c) for c in classes),
    )


def _merge(taxonomy: Taxonomy, entries: list[_Entry], path: Path) -> None:
    """Apply one file's entries to ``taxonomy``, then check its parents and cycles."""
    for entry in entries:
        key = normalize(entry.name)
        taxonomy.names[key] = entry.name
        if entry.parent is not None or key not in taxonomy.parent_of:
            taxonomy.parent_of[key] = normalize(entry.parent) if entry.parent else None
        if entry.classes is not None:
            for raw, genre in list(taxonomy.classes.items()):
                if genre == key:
                    del taxonomy.classes[raw]
            for raw in entry.classes:
                taxonomy.classes[raw] = key  # moves it from the genre that had it
    for entry in entries:
        parent = taxonomy.parent_of[normalize(entry.name)]
        if parent is not None and parent not in taxonomy.names:
            raise _fail(path, f"genre {entry.name!r}: parent {entry.parent!r} is not a genre")
        _check_cycle(taxonomy, entry.name, path)
    taxonomy.sources += (str(path),)


def _check_cycle(taxonomy: Taxonomy, name: str, path: Path) -> None:
    seen = [normalize(name)]
    key = taxonomy.parent_of[seen[0]]
    while key is not None:
        if key in seen:
            chain = " -> ".join(taxonomy.names[k] for k in [*seen, key])
            raise _fail(path, f"genre {name!r}: its parents make a cycle ({chain})")
        seen.append(key)
        key = taxonomy.parent_of[key]


def build_taxonomy(files: Iterable[Path]) -> Taxonomy:
    """The tree of ``files`` applied in order (the shipped one first)."""
    taxonomy = Taxonomy()
    for path in files:
        _merge(taxonomy, _read(path), path)
    return taxonomy


_cache: dict[tuple[tuple[str, int, int], ...], Taxonomy] = {}


def _stamp(files: list[Path]) -> tuple[tuple[str, int, int], ...]:
    stats = [(str(p), p.stat()) for p in files]
    return tuple((name, s.st_mtime_ns, s.st_size) for name, s in stats)


def user_taxonomy_path(home: Path) -> Path:
    return home / USER_TAXONOMY_FILE


def load_taxonomy(settings: Any = None, *, home: Path | None = None) -> Taxonomy:
    """The shipped tree, changed by ``<home>/genres.toml`` where it exists (``home``:
    ``settings.home``; neither: the shipped tree alone). Read again only when a file
    changed. Raises ConfigError naming the file and the entry at fault."""
    home = home if home is not None else getattr(settings, "home", None)
    files = [DEFAULT_TAXONOMY]
    if home is not None and user_taxonomy_path(Path(home)).is_file():
        files.append(user_taxonomy_path(Path(home)))
    stamp = _stamp(files)
    if stamp not in _cache:
        if len(_cache) > 8:
            _cache.clear()
        _cache[stamp] = build_taxonomy(files)
    return _cache[stamp]


def node_counts(taxonomy: Taxonomy, raw_counts: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """Per genre (display name), ``own``: labels of its own classes, and ``tracks``: of its
    whole subtree; labels the tree does not know count under their own name (``own`` and
    ``tracks`` alike, no parent)."""
    own: dict[str, int] = {}
    for raw, count in raw_counts.items():
        name = taxonomy.canonical(raw)
        own[name] = own.get(name, 0) + count
    out = {}
    for name in [n for _, n in taxonomy.walk()] + [n for n in own if n not in taxonomy]:
        below = taxonomy.descendants(name) if name in taxonomy else set()
        out[name] = {
            "own": own.get(name, 0),
            "tracks": own.get(name, 0) + sum(own.get(d, 0) for d in below),
        }
    return out
