"""genrectl: label a music library by genre and build playlists from it."""

__version__ = "0.1.0"
