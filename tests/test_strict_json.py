"""Results files are strict JSON: NaN and infinities are null, never bare tokens other readers reject."""

import json
import math

import numpy as np

from rqgmm.experiment.engine import write_json


def _strict(text: str):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_written_as_null(tmp_path):
    payload = {"auc": math.nan, "gain": np.float32(np.inf), "rows": np.int64(3), "per_seed": np.array([0.5, np.nan]),
               "nested": [{"p": -math.inf}], 3: "key"}
    write_json(tmp_path / "results.json", payload)
    back = _strict((tmp_path / "results.json").read_text())
    assert back == {"auc": None, "gain": None, "rows": 3, "per_seed": [0.5, None], "nested": [{"p": None}], "3": "key"}


def test_codes_to_standard_output_and_csv(tmp_path):
    """`-o -` with --format writes the codes to standard output (the summary goes to stderr);
    CSV codes carry a sidecar with the version and decode like Parquet."""
    import io
    import subprocess
    import sys

    from rqgmm import RQKMeans
    from rqgmm.io.tables import read_codes, write_matrix

    X = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    tokenizer = RQKMeans(n_levels=2, codebook_size=4, random_state=0, progress=False).fit(X)
    tokenizer.save(tmp_path / "tok")
    write_matrix(tmp_path / "items.parquet", X, np.array([f"i{k}" for k in range(200)]), "item_id")
    command = [sys.executable, "-m", "rqgmm.cli", "encode", str(tmp_path / "tok"), str(tmp_path / "items.parquet")]
    npy = subprocess.run([*command, "-o", "-", "--format", "npy"], capture_output=True, check=True)
    assert np.array_equal(np.load(io.BytesIO(npy.stdout)), tokenizer.encode(X))
    assert b"wrote standard output" in npy.stderr
    refused = subprocess.run([*command, "-o", "-"], capture_output=True, text=True)
    assert refused.returncode != 0 and "needs --format" in refused.stderr and "Traceback" not in refused.stderr
    subprocess.run([*command, "-o", str(tmp_path / "codes.csv"), "-q"], check=True)
    back = read_codes(tmp_path / "codes.csv", 2)
    assert np.array_equal(back.codes, tokenizer.encode(X)) and back.tokenizer_version == tokenizer.version
    assert list(back.ids[:2]) == ["i0", "i1"] and back.id_name == "item_id"
