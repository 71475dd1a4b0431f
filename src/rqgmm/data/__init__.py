"""Dataset loaders, the packaged text encoder and its on-disk embedding cache."""
