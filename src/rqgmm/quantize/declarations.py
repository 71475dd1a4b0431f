"""The hyperparameters of every tokenizer, declared once (see :mod:`rqgmm.quantize.params`).

The classes take their ``parameters`` from here; the command line builds its options from here
without importing the classes (or torch), so ``rqgmm --help`` starts fast.
"""

from __future__ import annotations

from rqgmm.quantize.params import (
    BATCH_SIZE,
    CACHE_MIB,
    CODEBOOK_SIZE,
    DEVICE,
    MAX_ITER,
    MAX_SAMPLES,
    N_LEVELS,
    PRECISION,
    PROGRESS,
    RANDOM_STATE,
    SEED,
    TOL,
    Param,
    in_range,
    one_of,
    positive_int,
)

KMEANS_INITS = ("kmeans++", "random")
BALANCE_MODES = ("hard", "soft")
COVARIANCE_TYPES = ("diag", "spherical", "tied")
GMM_INITS = ("kmeans++", "random", "kmeans")
RESIDUAL_MODES = ("hard", "soft")
FLOOR_MODES = ("absolute", "relative")
CODEBOOK_UPDATES = ("loss", "ema")
CODEBOOK_INITS = ("kmeans", "random")
MAX_WIDTH = 1 << 16  # widest network layer: bounds what a (possibly edited) manifest can make us allocate


def _fraction(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 0.5


RQKMEANS_PARAMETERS = (
    N_LEVELS, CODEBOOK_SIZE.but(help="Codes per level: K, or one K per level (any size, not only powers of 2)."),
    MAX_ITER.but(default=50, help="Lloyd iterations per level at most."),
    TOL.but(default=1e-4, help="Stop a level when its inertia decreases by less than this (relative)."),
    Param("init", "kmeans++", *one_of(*KMEANS_INITS), "Seeding: k-means++ on a sample, or distinct sample rows."),
    RANDOM_STATE, SEED, DEVICE, BATCH_SIZE, MAX_SAMPLES, PRECISION,
    Param("balance_mode", None, lambda v: v is None or v in BALANCE_MODES, f"None or one of {BALANCE_MODES}",
          "Balanced clusters at fit time: None, 'hard' (capacity ceil(n/K)) or 'soft' (Sinkhorn).",
          "'hard': every cluster holds at most ceil(n/K) of the rows it is fitted on (greedy"
          " capacity-constrained assignment over each row's nearest centroids); 'soft': Sinkhorn-balanced"
          " assignment, strength set by balance_temperature. Encoding stays nearest-centroid."),
    Param("balance", None, lambda v: v is None or v in BALANCE_MODES, f"None or one of {BALANCE_MODES}",
          "Deprecated spelling of balance_mode.", alias_of="balance_mode"),
    Param("balance_temperature", 0.1, *in_range(0, low_open=True),
          "Soft balance: Sinkhorn temperature relative to the mean nearest squared distance (smaller:"
          " stronger)."),
    CACHE_MIB, PROGRESS,
)

RQGMM_PARAMETERS = (
    N_LEVELS, CODEBOOK_SIZE.but(help="Mixture components per level: K, or one K per level."),
    MAX_ITER.but(help="EM iterations per level at most (after initialization)."),
    TOL.but(help="Stop a level when the mean log-likelihood per row changes by less than this (nats)."),
    Param("reg_covar", 1e-6, *in_range(0, low_open=True),
          "Variance floor added to every variance (see reg_covar_mode).",
          "Absolute: in the units of the squared embedding; relative: a fraction of the level's per-dimension"
          " residual variance measured on the initialization sample (a dimension's variance counts as at"
          " least 1e-6 of the mean one, so a constant dimension gets a usable floor)."),
    Param("reg_covar_mode", "absolute", *one_of(*FLOOR_MODES), "reg_covar in absolute units or relative"
          " to the residual variance."),
    Param("covariance_type", "diag", *one_of(*COVARIANCE_TYPES),
          "Per component: a diagonal ('diag', the paper's), one diagonal shared by a level ('tied') or one"
          " variance ('spherical').",
          "The variants study (docs/which-tokenizer.md) recommends 'tied' on sentence embeddings; the"
          " default stays the paper's model."),
    Param("init", "kmeans++", *one_of(*GMM_INITS),
          "EM's start: k-means++ centers, random sample rows, or k-means run to convergence."),
    Param("residual", "hard", *one_of(*RESIDUAL_MODES),
          "Residual passed on: x minus the chosen mean ('hard', the paper's) or the posterior-weighted"
          " mean ('soft'); decode always sums the chosen means."),
    Param("weight_prior", 1.0, *in_range(1), "Symmetric Dirichlet concentration on the weights (MAP-EM;"
          " 1: maximum likelihood)."),
    Param("balance", 0.0, *in_range(0, 1), "Strength in [0, 1] of the capacity-aware E-step (0: plain EM).",
          "After every E-step the weights become the E-step's weights times target / soft count (target"
          " n / K), blended geometrically with the maximum-likelihood weights; at 1 this is one Sinkhorn"
          " column-scaling step per EM pass. The stored weights are the balanced ones, so encode uses them."),
    Param("anneal_temperature", 1.0, *in_range(1), "Start temperature T0 of deterministic annealing"
          " (1: none).", "Responsibilities proportional to (w N)^(1/T), T decaying geometrically to 1 over"
          " anneal_iter iterations; convergence is checked only at T = 1."),
    Param("anneal_iter", 10, *in_range(0, integer=True), "EM iterations the annealing lasts."),
    RANDOM_STATE, SEED, DEVICE, BATCH_SIZE, MAX_SAMPLES, PRECISION,
    CACHE_MIB.but(details="RQ-GMM keeps the E-step features [x^2, x] (n x 2 dim)."),
    PROGRESS,
)

RQVAE_PARAMETERS = (
    N_LEVELS, CODEBOOK_SIZE,
    Param("latent_dim", 32, lambda v: positive_int(v) and v <= MAX_WIDTH, f"a positive int up to {MAX_WIDTH}",
          "Width of the quantized latent (TIGER: 32)."),
    Param("hidden_dims", (512, 256, 128), lambda v: isinstance(v, (list, tuple)) and len(v) <= 16
          and all(positive_int(x) and x <= MAX_WIDTH for x in v),
          f"a list of at most 16 positive ints up to {MAX_WIDTH} (may be empty)",
          "Encoder hidden widths; the decoder mirrors them (TIGER: 512,256,128)."),
    Param("beta", 0.25, *in_range(0), "Weight of the commitment loss (TIGER: 0.25)."),
    Param("codebook_update", "loss", *one_of(*CODEBOOK_UPDATES),
          "Codebook learning: the codebook loss ('loss', the paper's) or moving averages ('ema')."),
    Param("ema_decay", 0.99, lambda v: isinstance(v, float) and 0 < v < 1, "a float in (0, 1)",
          "Decay of the moving averages (codebook_update='ema')."),
    Param("dead_code_steps", 0, *in_range(0, integer=True),
          "Re-seed a code unused for this many training steps (0: never, the plain baseline)."),
    Param("codebook_init", "kmeans", *one_of(*CODEBOOK_INITS),
          "Codewords start as k-means of the first batch's latents (TIGER) or standard normal."),
    Param("learning_rate", 1e-3, lambda v: isinstance(v, float) and v > 0, "a float > 0", "Adam step size."),
    Param("train_batch_size", 256, positive_int, "a positive int", "Rows per training step."),
    Param("max_epochs", 200, positive_int, "a positive int", "Passes over the training rows at most."),
    Param("patience", 20, positive_int, "a positive int",
          "Stop after this many epochs without a better held-out reconstruction error."),
    Param("validation_fraction", 0.1, _fraction, "a number in [0, 0.5)",
          "Share of items held out for early stopping (0: train max_epochs)."),
    RANDOM_STATE, SEED, DEVICE, BATCH_SIZE.but(help="Rows per encode chunk."), PROGRESS,
)

VQVAE_PARAMETERS = tuple(p.but(positional=True) if p.name == "codebook_size" else p
                         for p in RQVAE_PARAMETERS if p.name != "n_levels")

# method name -> (class name, its parameters): what the command line offers, without the classes
METHOD_PARAMETERS = {"rq-gmm": ("RQGMM", RQGMM_PARAMETERS), "rq-kmeans": ("RQKMeans", RQKMEANS_PARAMETERS),
                     "rq-vae": ("RQVAE", RQVAE_PARAMETERS), "vq-vae": ("VQVAE", VQVAE_PARAMETERS)}
METHODS = tuple(METHOD_PARAMETERS)
