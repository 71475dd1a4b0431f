"""Names of the numeric embeddings of the streaming trainer (importable without its data code)."""

NUMERIC_METHODS = ("daes", "scalar", "static-bins", "refresh-bins", "autodis")
