#!/usr/bin/env bash
# The core install, as a user gets it from `pip install rqgmm` with no extras: build a wheel from
# this checkout, install it into a fresh virtual environment (with the CPU torch pinned, as the
# Makefile does) and run fit, encode, decode, info and the registry from an empty directory.
#   tools/core_install_check.sh [python]
set -euo pipefail
python=${1:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$root/tools/fresh_venv.sh"
"$work/venv/bin/pip" install --quiet "$wheel"
mkdir "$work/empty" && cd "$work/empty"
bin="$work/venv/bin"
for extra in sklearn pandas matplotlib starlette sentence_transformers ray faiss; do
  if "$bin/python" -c "import $extra" 2>/dev/null; then echo "core install pulled in $extra" >&2; exit 1; fi
done
"$bin/python" - <<'PY'
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

X = np.random.default_rng(0).normal(size=(2000, 16)).astype(np.float32)
np.save("x.npy", X)
vectors = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), 16)
pq.write_table(pa.table({"id": [f"item{i}" for i in range(2000)], "embedding": vectors}), "items.parquet")
PY
"$bin/rqgmm" --help > /dev/null
"$bin/rqgmm" fit x.npy -o tok --method rq-kmeans --levels 2 --codebook-size 16 -q
"$bin/rqgmm" fit x.npy -o gmm --method rq-gmm --levels 2 --codebook-size 8 -q
"$bin/rqgmm" encode tok items.parquet -o codes.parquet -q
"$bin/rqgmm" decode tok codes.parquet -o back.npy -q
"$bin/rqgmm" info tok > /dev/null
"$bin/rqgmm" registry assign ids.db tok items.parquet
"$bin/rqgmm" registry check ids.db
"$bin/rqgmm" registry export ids.db -o ids.parquet
echo "core install: $(basename "$wheel") with no extras fits, encodes, decodes, runs info and the registry"
