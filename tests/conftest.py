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


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server (Debian's binaries) for the session, on a unix socket in a
    temporary directory; skipped, naming why, where the binaries or psycopg are missing."""
    from rqgmm.testing.postgres import PostgresServer, server_binaries

    if server_binaries() is None:
        pytest.skip("PostgreSQL server binaries are not installed (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed (pip install 'rqgmm[postgres]')")
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request, tmp_path):
    """A fresh, not yet created registry on each backend: an SQLite path, or the URL of a new
    empty PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "r.db")
    return request.getfixturevalue("postgres_server").create_database()
