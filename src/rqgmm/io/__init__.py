"""Artifacts (manifest + arrays) and readers/writers for .npy and Parquet."""
