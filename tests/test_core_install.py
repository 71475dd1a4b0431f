"""The core install (no extras) fits, encodes and reports on tokenizers; a command that needs an
extra says which one to install."""

import subprocess
import sys

import numpy as np

BLOCKED = ["pandas", "matplotlib", "sentence_transformers", "ray", "starlette", "uvicorn", "orjson", "httpx",
           "sklearn", "faiss", "prometheus_client"]
# the extras behave as if not installed: importing them raises ModuleNotFoundError, as it would
RUN = ("import importlib.abc, sys\n"
       f"BLOCKED = {BLOCKED!r}\n"
       "class NotInstalled(importlib.abc.MetaPathFinder):\n"
       "    def find_spec(self, name, path, target=None):\n"
       "        if name.split('.')[0] in BLOCKED:\n"
       "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
       "sys.meta_path.insert(0, NotInstalled())\n"
       "from rqgmm.cli import main\n"
       "main(sys.argv[1:], prog_name='rqgmm')\n")


def rqgmm_without_extras(*args, cwd):
    return subprocess.run([sys.executable, "-c", RUN, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_core_commands_run_without_the_extras(tmp_path):
    X = np.random.default_rng(0).normal(size=(1500, 8)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    fit = rqgmm_without_extras("fit", "X.npy", "-o", "tok", "--method", "rq-kmeans", "--levels", 2,
                               "--codebook-size", 8, "-q", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    encode = rqgmm_without_extras("encode", "tok", "X.npy", "-o", "codes.npy", "-q", cwd=tmp_path)
    assert encode.returncode == 0, encode.stderr
    assert np.load(tmp_path / "codes.npy").shape == (1500, 2)
    info = rqgmm_without_extras("info", "tok", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    decode = rqgmm_without_extras("decode", "tok", "codes.npy", "-o", "back.npy", "-q", cwd=tmp_path)
    assert decode.returncode == 0, decode.stderr
    assert np.load(tmp_path / "back.npy").shape == (1500, 8)
    from rqgmm.io.tables import write_matrix

    write_matrix(tmp_path / "items.parquet", X, np.array([f"item{i}" for i in range(1500)], dtype=object), "id")
    assign = rqgmm_without_extras("registry", "assign", "ids.db", "tok", "items.parquet", cwd=tmp_path)
    assert assign.returncode == 0 and "1500 new" in assign.stdout, assign.stderr
    check = rqgmm_without_extras("registry", "check", "ids.db", cwd=tmp_path)
    assert check.returncode == 0 and "consistent: 1500" in check.stdout, check.stderr


def test_the_package_imports_without_scikit_learn():
    """The errors module once fell back to a duplicate base class without scikit-learn."""
    result = subprocess.run([sys.executable, "-c", "import sys; sys.modules['sklearn'] = None\n"
                             "import rqgmm\nfrom rqgmm.errors import NotFittedError\n"
                             "assert issubclass(NotFittedError, (ValueError, AttributeError))\n"
                             "import numpy as np\n"
                             "try:\n    rqgmm.RQKMeans().encode(np.zeros((2, 2)))\n"
                             "except NotFittedError as e:\n    print('named:', e)"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "named: this RQKMeans is not fitted yet" in result.stdout, result.stderr


def test_a_command_that_needs_an_extra_names_it(tmp_path):
    result = rqgmm_without_extras("ctr", "train", "--dataset", "ml-100k", "-o", "run", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'rqgmm[studies]'" in lines[0], result.stderr
    served = rqgmm_without_extras("serve", "tok", cwd=tmp_path)
    assert served.returncode == 1 and "rqgmm[serve]" in served.stderr


def test_the_light_name_lists_agree_with_the_implementations():
    from rqgmm.ctr.models import MODELS
    from rqgmm.ctr.names import MODEL_NAMES
    from rqgmm.stream.methods import NUMERIC_METHODS
    from rqgmm.stream.numeric import NumericEmbedding
    from rqgmm.stream.train import StreamConfig, make_numeric

    assert MODEL_NAMES == MODELS
    built = {name: type(make_numeric(StreamConfig(numeric=name), n_fields=2, warmup_rows=10)) for name in NUMERIC_METHODS}
    assert all(issubclass(kind, NumericEmbedding) for kind in built.values())
    assert len(set(built.values())) == len(NUMERIC_METHODS)  # every name builds its own embedding
