"""The ``genrectl`` command line. Thin: parse, validate, call scheduler/ and db/, render."""
