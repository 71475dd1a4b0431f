import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rqgmm.cli import main
from rqgmm.stream import (
    NUMERIC_METHODS,
    DAESEmbedding,
    Reservoir,
    StreamConfig,
    drifting_stream,
    quantile_map,
    run_stream,
)
from rqgmm.stream.data import causal_numeric_features
from rqgmm.stream.train import progressive_predictions

CHI2_9_DOF_P001 = 27.88  # chi-square critical value, 9 degrees of freedom, p = 0.001


def _stream_positions(n: int, capacity: int, seed: int, window=None) -> np.ndarray:
    reservoir = Reservoir(1, capacity, window=window, seed=seed)
    batch_rng = np.random.default_rng(seed + 100)
    start = 0
    while start < n:
        size = int(batch_rng.integers(1, 700))
        reservoir.update(np.arange(start, min(start + size, n), dtype=np.float64)[:, None])
        start += size
    assert reservoir.filled[0] == capacity and reservoir.seen[0] == n
    return reservoir.values[0]


def test_reservoir_keeps_a_uniform_sample_of_the_whole_stream():
    n, capacity = 20_000, 500
    kept = np.concatenate([_stream_positions(n, capacity, seed) for seed in range(20)])
    assert np.unique(_stream_positions(n, capacity, 0)).size == capacity  # no value kept twice
    counts = np.bincount((kept * 10 // n).astype(int), minlength=10)
    expected = kept.size / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < CHI2_9_DOF_P001, f"sample is not uniform over the stream: counts {counts}, chi2 {chi2:.1f}"


def test_recency_window_weights_the_sample_towards_recent_values():
    kept = _stream_positions(20_000, 500, 0, window=2_000)
    assert np.median(kept) > 20_000 - 2_000, np.median(kept)


def test_reservoir_skips_missing_values():
    reservoir = Reservoir(2, 4, seed=0)
    reservoir.update(np.array([[1.0, np.nan], [2.0, 5.0], [np.nan, np.nan]]))
    assert list(reservoir.filled) == [2, 1] and list(reservoir.seen) == [2, 1]
    ordered, _ = reservoir.sorted_sample()
    assert ordered[1, 0] == 5.0 and np.isinf(ordered[1, 1:]).all()


def test_quantile_map_interpolates_is_monotone_and_stays_in_the_unit_interval():
    sample = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 2.0, np.inf], [7.0] + [np.inf] * 4],
                          dtype=torch.float64)
    filled = torch.tensor([5, 4, 1])
    grid = torch.linspace(-2.0, 9.0, 1101, dtype=torch.float64)
    q = quantile_map(sample, filled, grid[:, None].expand(-1, 3))
    assert torch.all(q >= 0) and torch.all(q <= 1)
    assert torch.all(q[1:, :2] >= q[:-1, :2]), "quantile map must not decrease"
    assert torch.all(q[:, 2] == 0.5)  # one sample point: no distribution yet
    at = quantile_map(sample[:1], filled[:1], torch.tensor([[2.0], [2.5], [-1.0], [5.0]], dtype=torch.float64))
    torch.testing.assert_close(at[:, 0], torch.tensor([0.5, 0.625, 0.0, 1.0], dtype=torch.float64))
    tied = quantile_map(sample[1:2], filled[1:2], torch.tensor([[1.0]], dtype=torch.float64))
    assert float(tied) == pytest.approx(1 / 3)  # mid-rank of the three tied points: rank 1 of 0..3


def test_causal_features_use_only_the_past_on_movielens():
    from rqgmm.data.interactions import load_movielens

    frame = load_movielens().interactions
    frame = frame.iloc[np.argsort(frame["timestamp"].to_numpy(), kind="stable")].reset_index(drop=True)
    full = causal_numeric_features(frame)
    for cut in (1, 5_000, 50_000, 99_999):
        prefix = causal_numeric_features(frame.iloc[:cut])
        np.testing.assert_array_equal(prefix.to_numpy(), full.iloc[:cut].to_numpy())
    first = frame.groupby("user_id").head(1).index
    assert full.loc[first, "hours_since_user_previous"].isna().all()
    assert (full.loc[first, "user_events_so_far"] == 0).all()


@pytest.mark.parametrize("method", ["daes", "static-bins", "autodis"])
def test_predictions_never_depend_on_later_events(method):
    data = drifting_stream(3_000, seed=1)
    changed = drifting_stream(3_000, seed=1)
    cut = 1_536  # a batch boundary for batch_size 256
    changed.labels[cut:] = 1 - changed.labels[cut:]
    changed.numeric[cut:] = changed.numeric[cut:] * 3.0 + 7.0
    config = StreamConfig(numeric=method, seed=0, warmup_fraction=0.1)
    before = progressive_predictions(data, config, progress=False)
    after = progressive_predictions(changed, config, progress=False)
    np.testing.assert_array_equal(before[:cut], after[:cut])
    assert not np.array_equal(before[cut + 256:], after[cut + 256:])


@pytest.mark.parametrize("method", NUMERIC_METHODS)
def test_every_numeric_embedding_learns_in_the_streaming_loop(method):
    data = drifting_stream(20_000, seed=2)
    result = run_stream(data, StreamConfig(numeric=method, seed=0), progress=False)
    assert result["auc"] > 0.6, f"{method}: progressive AUC {result['auc']:.3f}"
    windows = [w["auc"] for w in result["windows"]]
    assert np.mean(windows[-3:]) > windows[0] - 0.02  # no collapse as the stream goes on


def test_daes_beats_static_binning_on_the_drifting_stream():
    data = drifting_stream(40_000, seed=0)
    daes = run_stream(data, StreamConfig(numeric="daes", seed=0), progress=False)
    static = run_stream(data, StreamConfig(numeric="static-bins", seed=0), progress=False)
    assert daes["auc"] > static["auc"] + 0.03, (daes["auc"], static["auc"])
    assert daes["log_loss"] < static["log_loss"]


def test_daes_modulations_are_options():
    values = torch.tensor([[0.5, np.nan], [2.0, 3.0]])
    for modulations in ((), ("temperature",), ("film",), ("temperature", "film")):
        embedding = DAESEmbedding(2, 4, modulations=modulations, capacity=10)
        embedding.observe(np.random.default_rng(0).normal(size=(50, 2)))
        out = embedding(values)
        assert out.shape == (2, 2, 4) and torch.isfinite(out).all()
        assert embedding.width.requires_grad == ("temperature" in modulations)
        assert hasattr(embedding, "film") == ("film" in modulations)
    with pytest.raises(ValueError, match="unknown modulation"):
        DAESEmbedding(2, 4, modulations=("sharpness",))


def test_stream_command_compares_methods_and_writes_json(tmp_path):
    out = tmp_path / "stream.json"
    result = CliRunner().invoke(main, ["stream", "--dataset", "drifting", "--events", "4000", "--numeric",
                                       "daes,static-bins", "--seeds", "0,1", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert "| daes |" in result.output and "| static-bins |" in result.output
    saved = json.loads(out.read_text())
    assert len(saved["methods"]["daes"]["auc"]) == 2 and saved["dataset"] == "drifting"
    again = CliRunner().invoke(main, ["stream", "--dataset", "drifting", "--events", "4000", "-o", str(out), "-q"])
    assert again.exit_code != 0 and "already exists" in again.output


def test_stream_command_names_an_unknown_method():
    result = CliRunner().invoke(main, ["stream", "--numeric", "daes,bins"])
    assert result.exit_code != 0
    assert "unknown numeric embedding(s) ['bins']" in result.output and "static-bins" in result.output


def test_sorted_quantile_matches_numpy_on_partly_filled_rows():
    from rqgmm.stream.daes import sorted_quantile

    rng = np.random.default_rng(0)
    ordered = np.sort(rng.normal(size=(3, 40)), axis=1)
    ordered[1, 9:] = np.inf
    filled = np.array([40, 9, 0])
    for level in (0.25, 0.5, 0.75):
        got = sorted_quantile(ordered, filled, level)
        np.testing.assert_allclose(got[:2], [np.quantile(ordered[f, :filled[f]], level) for f in range(2)])
        assert got[2] == 0.0


def test_stream_command_refuses_an_unknown_device():
    result = CliRunner().invoke(main, ["stream", "--dataset", "drifting", "--events", "1000", "--device", "tpu"])
    assert result.exit_code != 0
    assert "--device" in result.output and "'tpu'" in result.output


def test_distribution_state_follows_the_module_and_stays_out_of_the_state_dict():
    embedding = DAESEmbedding(2, 4, capacity=50)
    embedding.observe(np.random.default_rng(0).normal(size=(100, 2)))
    assert {"_sorted", "_filled", "_median", "_spread"} <= {name for name, _ in embedding.named_buffers()}
    assert not any(name.startswith("_") for name in embedding.state_dict())
    doubled = embedding.to(torch.float64)  # a module-wide move reaches the reservoir state too
    assert doubled._median.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("method", NUMERIC_METHODS)
def test_streaming_on_cuda_gives_the_cpu_figures(method):
    data = drifting_stream(3000, seed=0)
    figures = {device: run_stream(data, StreamConfig(numeric=method, device=device))["auc"]
               for device in ("cpu", "cuda")}
    assert figures["cuda"] == pytest.approx(figures["cpu"], abs=5e-3)


def test_stream_command_writes_a_stamped_results_document(tmp_path, monkeypatch):
    document = tmp_path / "stream.md"
    arguments = ["stream", "--dataset", "drifting", "--events", "3000", "--numeric", "daes,scalar",
                 "--markdown", str(document), "-q"]
    monkeypatch.setattr("sys.argv", ["/venv/bin/rqgmm", *arguments])  # the command line the stamp quotes
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    text = document.read_text()
    assert re.search(r"Produced by `rqgmm stream --dataset drifting [^`]*--markdown [^`]*` on \d{4}-\d\d-\d\d", text)
    assert "| daes |" in text and "| scalar |" in text
