import numpy as np
import pytest
import torch

from rqgmm import RQVAE, VQVAE, load
from rqgmm.errors import InvalidInputError
from tests.conftest import mixture_sample

SMALL = dict(hidden_dims=(64, 32), latent_dim=8, max_epochs=25, train_batch_size=256, progress=False)


def utilization(codes, size):
    return [len(np.unique(codes[:, level])) / size for level in range(codes.shape[1])]


@pytest.fixture(scope="module")
def mixture():
    X, _ = mixture_sample(n=3000, dim=8, n_components=12, separation=4.0, seed=1)
    return X


@pytest.fixture(scope="module")
def fitted(mixture):
    tokenizer = RQVAE(n_levels=2, codebook_size=16, random_state=0, **SMALL)
    return tokenizer, tokenizer.fit_encode(mixture)


def test_training_loss_and_held_out_error_decrease(fitted):
    tokenizer, _ = fitted
    assert tokenizer.loss_history_[-1] < 0.8 * tokenizer.loss_history_[0]
    assert min(tokenizer.validation_history_) < 0.5 * tokenizer.validation_history_[0]
    assert tokenizer.validation_history_[tokenizer.best_epoch_] == min(tokenizer.validation_history_)


def test_more_levels_reconstruct_better(fitted, mixture):
    tokenizer, codes = fitted
    one = np.mean((tokenizer.decode_prefix(codes, 1) - mixture) ** 2)
    two = np.mean((tokenizer.decode(codes) - mixture) ** 2)
    assert two < one < np.var(mixture, axis=0).sum() / mixture.shape[1]


def test_decode_is_the_decoder_output_of_the_quantized_latent(fitted, mixture):
    tokenizer, codes = fitted
    network = tokenizer.network_
    with torch.no_grad():
        x = (torch.from_numpy(mixture[:50]) - torch.from_numpy(tokenizer.mean_)) / tokenizer.scale_
        quantized = network.codebooks(network.encoder(x))
        expected = network.decoder(quantized.quantized) * tokenizer.scale_ + torch.from_numpy(tokenizer.mean_)
    np.testing.assert_array_equal(quantized.codes.numpy(), codes[:50])
    np.testing.assert_allclose(tokenizer.decode(codes[:50]), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_fit_encode_equals_encode(fitted, mixture):
    tokenizer, codes = fitted
    np.testing.assert_array_equal(tokenizer.encode(mixture), codes)


def test_save_load_round_trip_gives_identical_codes(fitted, mixture, tmp_path):
    tokenizer, codes = fitted
    tokenizer.save(tmp_path / "vae")
    restored = load(tmp_path / "vae")
    assert isinstance(restored, RQVAE)
    assert restored._json_params() == tokenizer._json_params()  # as stored: tuples come back as lists
    np.testing.assert_array_equal(restored.encode(mixture), codes)
    np.testing.assert_array_equal(restored.decode(codes), tokenizer.decode(codes))


def test_same_seed_same_codes_other_seed_differs(mixture, fitted):
    _, codes = fitted
    again = RQVAE(n_levels=2, codebook_size=16, random_state=0, **SMALL).fit_encode(mixture)
    other = RQVAE(n_levels=2, codebook_size=16, random_state=1, **SMALL).fit_encode(mixture)
    np.testing.assert_array_equal(again, codes)
    assert not np.array_equal(other, codes)


@pytest.mark.parametrize("update", ["loss", "ema"])
def test_dead_code_reseeding_rescues_a_collapsed_codebook(mixture, update):
    # Random codewords far from the latents: the nearest one takes every row and the others die.
    collapsing = dict(n_levels=2, codebook_size=32, codebook_init="random", codebook_update=update, seed=0, **SMALL)
    plain = RQVAE(**collapsing)
    plain_codes = plain.fit_encode(mixture)
    rescued = RQVAE(dead_code_steps=5, **collapsing)
    rescued_codes = rescued.fit_encode(mixture)
    assert min(utilization(rescued_codes, 32)) >= max(utilization(plain_codes, 32)) + 0.4
    assert min(rescued.n_reseeded_) > 0 and plain.n_reseeded_ == [0, 0]
    plain_mse = np.mean((plain.decode(plain_codes) - mixture) ** 2)
    rescued_mse = np.mean((rescued.decode(rescued_codes) - mixture) ** 2)
    assert rescued_mse < 0.75 * plain_mse


def test_vq_vae_has_one_level_and_round_trips(mixture, tmp_path):
    tokenizer = VQVAE(codebook_size=16, random_state=0, **SMALL)
    codes = tokenizer.fit_encode(mixture)
    assert codes.shape == (len(mixture), 1)
    assert "n_levels" not in tokenizer.get_params()
    tokenizer.save(tmp_path / "vq")
    restored = load(tmp_path / "vq")
    assert type(restored) is VQVAE
    np.testing.assert_array_equal(restored.encode(mixture), codes)


def test_without_held_out_rows_trains_every_epoch(mixture):
    tokenizer = RQVAE(n_levels=1, codebook_size=8, random_state=0, validation_fraction=0.0,
                      **{**SMALL, "max_epochs": 4}).fit(mixture)
    assert tokenizer.n_epochs_ == 4
    assert tokenizer.validation_history_ == tokenizer.loss_history_


@pytest.mark.parametrize("params, message", [
    ({"beta": -1.0}, "beta must be a number >= 0"),
    ({"codebook_update": "adam"}, "codebook_update must be one of"),
    ({"validation_fraction": 0.7}, r"validation_fraction must be a number in \[0, 0.5\)"),
    ({"hidden_dims": (64, 0)}, "hidden_dims must be a list of"),
])
def test_bad_parameters_are_named(mixture, params, message):
    with pytest.raises(InvalidInputError, match=message):
        RQVAE(n_levels=1, codebook_size=4, **{**SMALL, **params}).fit(mixture)


def test_wrong_dimension_at_encode_is_named(fitted):
    tokenizer, _ = fitted
    with pytest.raises(InvalidInputError, match=r"X has 5 features, but \w+ is expecting 8"):
        tokenizer.encode(np.zeros((3, 5), dtype=np.float32))
