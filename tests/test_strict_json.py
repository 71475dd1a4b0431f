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
