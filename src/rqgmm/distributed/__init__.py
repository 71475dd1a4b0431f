"""Tokenizers on an existing distributed engine (Ray), an optional extra: ``pip install 'rqgmm[ray]'``.

:func:`fit_on_ray` fits RQ-GMM or RQ-KMeans on a Ray Dataset with the library's own chunked
E-step / Lloyd statistics mapped over the dataset's blocks, reduced on the driver in block order,
level by level, exactly as on one machine; :func:`encode_on_ray` writes a catalogue's codes to
Parquet with ``map_batches``. The engine provides scheduling, the object store and task retries.
"""

from rqgmm.distributed.engine import (
    embedding_column,
    encode_on_ray,
    fit_on_ray,
    ray_session,
    read_parquet_dataset,
    require_ray,
)

__all__ = ["embedding_column", "encode_on_ray", "fit_on_ray", "ray_session", "read_parquet_dataset", "require_ray"]
