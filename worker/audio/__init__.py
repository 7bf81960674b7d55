"""Audio files: decoding into segments, reading and writing their tags."""
