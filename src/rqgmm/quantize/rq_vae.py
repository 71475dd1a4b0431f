"""RQ-VAE and VQ-VAE: the neural baselines of the RQ-GMM paper, under the tokenizer contract.

RQ-VAE follows TIGER (arXiv 2305.05065): an MLP encoder to a small latent, ``L`` residual
codebooks, an MLP decoder back to the input; loss = reconstruction + codebook + beta * commitment,
straight-through gradients, codebooks initialized by k-means on the first training batch. VQ-VAE
is the same network with one codebook.

Inputs are centred and divided by one global scale (the root mean variance per coordinate)
before the encoder, so the reconstruction loss is proportional to the mean squared error in the
input space; ``decode`` undoes it. Training holds out a share of the items and stops early when
their reconstruction error stops improving, restoring the best weights.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F

from rqgmm.progress import progress_bar
from rqgmm.quantize.base import ResidualTokenizer
from rqgmm.quantize.declarations import RQVAE_PARAMETERS, VQVAE_PARAMETERS
from rqgmm.quantize.kmeans import CentroidScorer, kmeans_in_memory
from rqgmm.quantize.rowops import resolve_device
from rqgmm.quantize.vae_network import ResidualAutoencoder
from rqgmm.validation import EmbeddingMatrix

IN_MEMORY_BYTES = 2 << 30  # training rows up to this size are read once; larger ones per batch




class RQVAE(ResidualTokenizer):
    """Residual-quantized variational autoencoder tokenizer (TIGER's RQ-VAE).

    Attributes
    ----------
    codebooks_: list of L arrays (K_l, latent_dim) float32, in the latent space.
    mean_ (dim,), scale_: input standardization. loss_history_: training loss per epoch;
    validation_history_: held-out reconstruction MSE per epoch (input units); best_epoch_,
    n_epochs_; n_reseeded_: dead codes re-seeded per level over training.

    Example::

        tokenizer = RQVAE(n_levels=3, codebook_size=256, random_state=0)
        codes = tokenizer.fit_encode(X)      # (n, 3) int64
        X_hat = tokenizer.decode(codes)      # (n, dim): decoder(sum of codewords)
    """

    parameters = RQVAE_PARAMETERS


    # ------------------------------------------------------------------ network
    def _build_network(self, dim: int, seed: int) -> ResidualAutoencoder:
        """A fresh network for ``dim``-wide inputs, its weights drawn from ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            network = ResidualAutoencoder(dim, self.latent_dim, list(self.hidden_dims), self.codebook_sizes,
                                          ema=self.codebook_update == "ema", decay=self.ema_decay)
        return network.to(self.device_)

    def _standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._mean_tensor) / self.scale_

    def _to_latent(self, chunk):
        return self.network_.encoder(self._standardize(chunk))

    def _from_latent(self, latent):
        out = np.empty((latent.shape[0], self.n_features_in_), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, latent.shape[0], self.batch_size):
                block = torch.from_numpy(np.ascontiguousarray(latent[start:start + self.batch_size])).to(self.device_)
                decoded = self.network_.decoder(block) * self.scale_ + self._mean_tensor
                out[start:start + block.shape[0]] = decoded.cpu().numpy()
        return out

    def level_scores(self, level, residual):
        scorers = self.__dict__.setdefault("_scorers", {})
        scorer = scorers.get(level)
        if scorer is None or scorer.centroids.device != residual.device:
            scorer = CentroidScorer(self._device_codebooks[level].to(residual.device))
            scorers[level] = scorer
        return scorer.scores(residual)

    def check_fitted(self):
        super().check_fitted()
        if next(self.network_.parameters()).device != self.device_:
            self.network_.to(self.device_)
            self._mean_tensor = self._mean_tensor.to(self.device_)

    # ------------------------------------------------------------------ training
    def _fit(self, X, drop_invalid):
        matrix = self._check_fit_input(X, drop_invalid)
        self.__dict__.pop("_scorers", None)
        moments = matrix.moments()
        self.mean_ = moments.mean.astype(np.float32)
        self.scale_ = float(math.sqrt(max(float(moments.variance.mean()), 1e-30)))
        self._mean_tensor = torch.from_numpy(self.mean_).to(self.device_)
        self.seed_ = self._draw_seed()
        generator = torch.Generator().manual_seed(self.seed_)
        train, held_out = self._split(matrix.n_rows, generator)
        rows = _RowSource(matrix, self.device_)
        self.network_ = self._build_network(matrix.dim, self.seed_)
        self._train(rows, train, held_out, generator)
        self.network_.eval()
        self.codebooks_ = [self.network_.codebooks.codebook(level).detach().cpu().numpy().copy()
                           for level in range(self.n_levels)]
        self._device_codebooks = [torch.as_tensor(c, device=self.device_) for c in self.codebooks_]
        return self._encode_matrix(matrix)

    def _split(self, n_rows: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Seeded split of row positions into (training, held-out), each sorted int64."""
        order = torch.randperm(n_rows, generator=generator).numpy()
        n_held_out = int(round(self.validation_fraction * n_rows))
        return np.sort(order[n_held_out:]), np.sort(order[:n_held_out])

    def _initialize_codebooks(self, first_batch: torch.Tensor, generator: torch.Generator) -> None:
        codebooks = self.network_.codebooks
        with torch.no_grad():
            residual = self.network_.encoder(self._standardize(first_batch))
            for level, k in enumerate(self.codebook_sizes):
                if self.codebook_init == "kmeans":
                    centroids = kmeans_in_memory(residual, k, generator).to(residual.device)
                else:
                    centroids = torch.randn(k, self.latent_dim, generator=generator).to(residual.device)
                codebooks.set_codewords(level, slice(None), centroids)
                residual = residual - centroids[CentroidScorer(centroids).scores(residual).argmax(1)]

    def _train(self, rows: "_RowSource", train: np.ndarray, held_out: np.ndarray, generator: torch.Generator) -> None:
        network = self.network_
        optimizer = torch.optim.Adam([p for p in network.parameters() if p.requires_grad], lr=self.learning_rate,
                                     foreach=True)
        batch = min(self.train_batch_size, len(train))
        init_rows = max(batch, min(len(train), 16 * max(self.codebook_sizes)))
        first = train[torch.randperm(len(train), generator=generator)[:init_rows].numpy()]
        self._initialize_codebooks(rows.take(first), generator)
        self.loss_history_, self.validation_history_ = [], []
        self.n_reseeded_ = [0] * self.n_levels
        best_score, best_state, self.best_epoch_, stale = math.inf, None, 0, 0
        epochs = progress_bar(range(self.max_epochs), enabled=self.progress, desc=f"{type(self).__name__} epochs")
        for epoch in epochs:
            network.train()
            order = train[torch.randperm(len(train), generator=generator).numpy()]
            total, used = 0.0, [torch.zeros(k, dtype=torch.bool, device=self.device_) for k in self.codebook_sizes]
            for start in range(0, len(order), batch):
                x = self._standardize(rows.take(order[start:start + batch]))
                reconstruction, q = network(x)
                loss = F.mse_loss(reconstruction, x) + q.codebook_loss + self.beta * q.commitment_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if network.codebooks.ema:
                    network.codebooks.ema_update(q.residuals, q.codes)
                if self.dead_code_steps:
                    for level, n in enumerate(network.codebooks.reseed_dead(q.residuals, q.codes,
                                                                            self.dead_code_steps, generator)):
                        self.n_reseeded_[level] += n
                for level in range(self.n_levels):
                    used[level][q.codes[:, level]] = True
                total += float(loss.detach()) * x.shape[0]
            self.loss_history_.append(total / len(order))
            score = self._held_out_mse(rows, held_out) if len(held_out) else self.loss_history_[-1]
            self.validation_history_.append(score)
            utilization = " ".join(f"{float(u.float().mean()):.0%}" for u in used)
            epochs.set_postfix(loss=f"{self.loss_history_[-1]:.4g}", held_out=f"{score:.4g}", used=utilization)
            if score < best_score * (1 - 1e-4):
                best_score, best_state, self.best_epoch_, stale = score, copy.deepcopy(network.state_dict()), epoch, 0
            else:
                stale += 1
                if stale >= self.patience:
                    break
        self.n_epochs_ = len(self.loss_history_)
        network.load_state_dict(best_state)

    def _held_out_mse(self, rows: "_RowSource", positions: np.ndarray) -> float:
        """Mean squared error per coordinate of the quantized reconstruction, in input units."""
        self.network_.eval()
        squared = 0.0
        with torch.no_grad():
            for start in range(0, len(positions), self.batch_size):
                x = self._standardize(rows.take(positions[start:start + self.batch_size]))
                reconstruction = self.network_.decoder(self.network_.codebooks(self.network_.encoder(x)).quantized)
                squared += float((reconstruction - x).square().sum())
        return squared * self.scale_ ** 2 / (len(positions) * self.n_features_in_)

    # ------------------------------------------------------------------ artifacts
    def _fitted_arrays(self):
        arrays = super()._fitted_arrays()
        arrays["input.mean"] = self.mean_
        for prefix, module in (("encoder", self.network_.encoder), ("decoder", self.network_.decoder)):
            for name, tensor in module.state_dict().items():
                arrays[f"{prefix}.{name}"] = tensor.detach().cpu().numpy()
        return arrays

    def _fitted_attributes(self):
        return {**super()._fitted_attributes(), "scale_": self.scale_, "loss_history_": self.loss_history_,
                "validation_history_": self.validation_history_, "best_epoch_": self.best_epoch_,
                "n_epochs_": self.n_epochs_, "n_reseeded_": self.n_reseeded_}

    def _restore(self, arrays, attributes):
        super()._restore(arrays, attributes)
        for name in ("scale_", "loss_history_", "validation_history_", "best_epoch_", "n_epochs_", "n_reseeded_"):
            setattr(self, name, attributes[name])
        self.device_ = resolve_device(self.device)
        self.mean_ = arrays["input.mean"]
        self._mean_tensor = torch.from_numpy(self.mean_).to(self.device_)
        self.network_ = self._build_network(self.n_features_in_, 0)  # weights restored next
        for prefix, module in (("encoder", self.network_.encoder), ("decoder", self.network_.decoder)):
            state = {name: torch.from_numpy(arrays[f"{prefix}.{name}"]) for name in module.state_dict()}
            module.load_state_dict(state)
        self.network_.eval()


class VQVAE(RQVAE):
    """VQ-VAE tokenizer: :class:`RQVAE` with a single codebook (one code per item)."""

    n_levels = 1
    parameters = VQVAE_PARAMETERS


class _RowSource:
    """Training rows by position: the whole matrix held once in memory when it fits in
    ``IN_MEMORY_BYTES``, otherwise read per batch from the (memory-mapped) source."""

    def __init__(self, matrix: EmbeddingMatrix, device: torch.device):
        self.matrix = matrix
        self.device = device
        fits = matrix.n_rows * matrix.dim * 4 <= IN_MEMORY_BYTES
        self.rows = torch.from_numpy(matrix.read(0, matrix.n_rows)).to(device) if fits else None

    def take(self, positions: np.ndarray) -> torch.Tensor:
        """Rows at ``positions``: (len(positions), dim) float32 on the device."""
        if self.rows is not None:
            return self.rows[torch.from_numpy(np.asarray(positions, dtype=np.int64)).to(self.device)]
        return torch.from_numpy(self.matrix.take(positions)).to(self.device)
