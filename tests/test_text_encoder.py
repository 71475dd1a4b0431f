"""The text encoder takes the packaged MiniLM, a local model directory, or a model name."""

import numpy as np
import pytest


def test_any_sentence_transformers_model_by_directory_or_name(tmp_path):
    from rqgmm.data.text_encoder import TextEncoder, minilm_path
    from rqgmm.errors import InvalidInputError

    texts = ["Toy Story (1995). Genres: Animation", "Heat (1995). Genres: Crime"]
    packaged = TextEncoder(cache_dir=tmp_path, progress=False).encode(texts)
    by_directory = TextEncoder(model=minilm_path(), cache_dir=tmp_path, progress=False)
    assert by_directory.model_key != TextEncoder(cache_dir=tmp_path, progress=False).model_key
    np.testing.assert_allclose(by_directory.encode(texts), packaged, atol=1e-6)
    with pytest.raises(InvalidInputError, match="has no model.safetensors"):
        TextEncoder(model=tmp_path, cache_dir=tmp_path)
    missing = TextEncoder(model="no-such-org/no-such-model-xyz", cache_dir=tmp_path, progress=False)
    with pytest.raises(InvalidInputError, match="cannot load model 'no-such-org/no-such-model-xyz'"):
        missing.encode(["x"])
