"""Semantic IDs online: ``rqgmm serve`` (an HTTP service over a tokenizer, an ID registry and,
optionally, a CTR run). Needs the ``serve`` extra: ``pip install 'rqgmm[serve]'``."""
