import numpy as np
import pytest


def mixture_sample(n=3000, dim=6, n_components=5, separation=6.0, seed=0):
    """Rows drawn from a known diagonal Gaussian mixture: (X float32, truth dict)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_components, dim)) * separation
    stds = rng.uniform(0.5, 1.5, size=(n_components, dim))
    weights = rng.dirichlet(np.full(n_components, 5.0))
    labels = rng.choice(n_components, size=n, p=weights)
    X = means[labels] + rng.normal(size=(n, dim)) * stds[labels]
    return X.astype(np.float32), {"means": means, "variances": stds**2, "weights": weights, "labels": labels}


@pytest.fixture
def blobs():
    X, _ = mixture_sample(n=4000, dim=8, n_components=12, separation=4.0, seed=1)
    return X
