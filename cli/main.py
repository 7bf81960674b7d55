"""``genrectl``: every command is registered here, by name, and imported when it runs
(``cli.app.GenrectlGroup``): ``genrectl --help`` lists them from the summaries below, which
tests/cli/test_commands.py checks against each command's own help."""

from __future__ import annotations

from cli.app import cli

# name: ("module:attribute", the first sentence of the command's help).
COMMANDS: dict[str, tuple[str, str]] = {
    "config": (
        "cli.commands:config",
        "Print the effective settings (passwords in URLs are masked).",
    ),
    "db": ("cli.commands:db", "Database maintenance."),
    "evaluate": (
        "cli.experiment:evaluate",
        "Score the registered MODEL on every track of DATA (a folder per genre).",
    ),
    "experiment": ("cli.experiment:experiment", "Experiments that reproduce the reference report."),
    "gc": (
        "cli.housekeeping:gc",
        "Remove stored features nothing uses: shard files no row names (a commit that failed, a "
        "worker killed while writing), shards no track uses any more, and the features of "
        "tracks deleted from the library.",
    ),
    "genres": (
        "cli.browse:genres",
        "How many featurized tracks each genre has, as a bar chart; `genres tree`: your genre "
        "tree.",
    ),
    "ingest": ("cli.ingest:ingest", "Add the music under PATHS to the library."),
    "jobs": ("cli.jobs:jobs", "Batches of work (one per `genrectl ingest`) and their items."),
    "label": (
        "cli.labels:label",
        "Give TRACK (an id, a path, or the end of a path) your own GENRE.",
    ),
    "models": ("cli.models:models", "The model registry: list, show, promote, import, export."),
    "playlist": (
        "cli.playlists:playlist",
        "Smart playlists: saved rules over the library's genre labels.",
    ),
    "predict": (
        "cli.models:predict",
        "Predict the genre of audio files without adding them to the library.",
    ),
    "reconcile": (
        "cli.jobs:reconcile",
        "Send again the work the database says is unfinished and no message covers.",
    ),
    "relabel": (
        "cli.labels:relabel",
        "Label every featurized track again with the promoted model and say what changed.",
    ),
    "report": (
        "cli.report:report",
        "Write one static HTML page: genre distribution, confidence histogram, the promoted "
        "model's metrics and confusion matrix, and the tracks the model is least sure of.",
    ),
    "show": (
        "cli.browse:show",
        "Everything about one TRACK (an id, a path, or the end of a path): tags, your label, "
        "the model's label with its top 3, and the model's answer for each 6 s segment.",
    ),
    "status": (
        "cli.commands:status",
        "What is in the library: tracks by status, shards, segments, the last batch, the "
        "stages of running batches and training jobs; in distributed mode also the depth of "
        "each queue, the live workers per queue, the cluster's last reconcile and gc, and a "
        "warning when a queue has work and no worker.",
    ),
    "tags": (
        "cli.tags:tags",
        "Write genre labels into your files' own tags (only when asked), and take them back.",
    ),
    "tracks": ("cli.tracks:tracks", "Browse the tracks of the library."),
    "train": (
        "cli.train:train",
        "Train a genre model on DATA (a folder per genre) or --from-library, and register it.",
    ),
    "verify": (
        "cli.verify:verify",
        "Check every shard against its recorded sha256, feature version and row count, and "
        "every model file (and the shipped encoders' weights) against its sha256.",
    ),
    "worker": (
        "cli.commands:worker",
        "Run a Celery worker consuming the given queues (distributed mode).",
    ),
}

for _name, (_target, _summary) in COMMANDS.items():
    cli.add_lazy_command(_name, _target, _summary)


def main() -> None:
    from genrectl.stopping import raise_on_sigterm

    raise_on_sigterm()  # SIGTERM stops a command as cleanly as Ctrl-C does
    cli(prog_name="genrectl")


if __name__ == "__main__":
    main()
