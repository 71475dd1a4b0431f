"""The offline experiment: tokenizers, quality, CTR grid and report from one YAML config."""
