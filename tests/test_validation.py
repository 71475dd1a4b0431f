import sys

import numpy as np
import pytest

from rqgmm.validation import EmbeddingMatrix


def _resident_kib() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status (Linux)")
def test_a_pass_over_a_read_only_memmap_keeps_the_resident_set_bounded(tmp_path):
    path = tmp_path / "X.npy"
    rows = 131072  # 64 MiB of float32 x 128
    written = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, 128))
    written[:] = 1.0
    written.flush()
    del written
    mapped = np.load(path, mmap_mode="r")
    before = _resident_kib()
    total = 0.0
    for _, chunk in EmbeddingMatrix(mapped).chunks(4096):
        total += float(chunk.sum())
    growth_mib = (_resident_kib() - before) / 1024
    assert total == rows * 128
    assert growth_mib < 16, f"resident set grew by {growth_mib:.0f} MiB over a 64 MiB file"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status (Linux)")
def test_a_scattered_sample_of_a_memmap_does_not_map_the_whole_file(tmp_path):
    path = tmp_path / "X.npy"
    rows = 131072  # 64 MiB of float32 x 128
    written = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, 128))
    written[:] = np.arange(rows, dtype=np.float32)[:, None]
    written.flush()
    del written
    mapped = np.load(path, mmap_mode="r")
    positions = np.random.default_rng(0).choice(rows, size=8000, replace=False)
    before = _resident_kib()
    sample = EmbeddingMatrix(mapped).take(positions)
    growth_mib = (_resident_kib() - before) / 1024
    np.testing.assert_array_equal(sample[:, 0], positions.astype(np.float32))
    assert growth_mib < 16, f"resident set grew by {growth_mib:.0f} MiB for a 4 MiB sample of a 64 MiB file"


def test_writable_memmaps_are_read_without_losing_their_changes(tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, np.zeros((5000, 16), dtype=np.float32))
    mapped = np.load(path, mmap_mode="r+")
    mapped[:] = 2.0  # changed in memory, not flushed
    chunks = [chunk.numpy() for _, chunk in EmbeddingMatrix(mapped).chunks(1000)]
    assert np.all(np.concatenate(chunks) == 2.0)
    assert np.all(mapped == 2.0)
