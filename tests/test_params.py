"""Hyperparameters declared once: the classes, their validation, `rqgmm fit --help` and the
docs page all come from the declarations, and cannot drift apart."""

import inspect
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from rqgmm.cli import main
from rqgmm.errors import InvalidInputError
from rqgmm.quantize import make_tokenizer
from rqgmm.quantize.declarations import METHOD_PARAMETERS


@pytest.mark.parametrize("method", list(METHOD_PARAMETERS))
def test_a_class_is_its_declarations(method):
    class_name, declared = METHOD_PARAMETERS[method]
    tokenizer = make_tokenizer(method, 1, 4)
    klass = type(tokenizer)
    assert klass.__name__ == class_name
    signature = inspect.signature(klass.__init__).parameters
    assert [name for name in signature if name != "self"] == sorted(
        (p.name for p in declared), key=lambda name: not next(p for p in declared if p.name == name).positional)
    defaults = {p.name: p.default for p in declared if p.name != "n_levels"}
    assert {k: v for k, v in tokenizer.get_params().items() if k not in ("n_levels", "codebook_size")} == {
        k: v for k, v in defaults.items() if k != "codebook_size"}
    for param in declared:  # every declaration refuses a value outside what it allows, naming it
        if param.name in ("progress", "hidden_dims"):
            continue
        bad = next(v for v in ("not-a-value", -1, 10**30, 0.5) if not param.check(v))
        with pytest.raises(InvalidInputError, match=rf"parameter {param.name} must be"):
            tokenizer.set_params(**{param.name: bad}).validate_params(warn=False)
        tokenizer.set_params(**{param.name: param.default} if param.name not in ("n_levels", "codebook_size")
                             else {param.name: getattr(make_tokenizer(method, 1, 4), param.name)})


def test_every_generated_option_shows_its_declared_help_and_no_markup():
    help_text = " ".join(CliRunner().invoke(main, ["fit", "--help"], terminal_width=200).output.split())
    assert "``" not in help_text and ":class:" not in help_text and ":func:" not in help_text
    for method, (_, declared) in METHOD_PARAMETERS.items():
        for param in declared:
            if param.name in ("n_levels", "codebook_size", "random_state", "seed", "device", "batch_size", "progress"):
                continue
            option = f"--{param.name.replace('_', '-')}"
            entry = help_text.split(option + " ", 1)[1].split(" --", 1)[0]
            assert param.help.rstrip(".") in entry, f"{option}: help does not show the declaration"
            assert method in entry, f"{option}: help does not name {method}"


def test_the_parameters_page_is_generated_from_the_declarations():
    result = subprocess.run([sys.executable, "-m", "tools.parameter_docs", "--check"], capture_output=True)
    assert result.returncode == 0, "docs/parameters.md is stale: run python -m tools.parameter_docs"


def test_a_generated_option_reaches_the_tokenizer_with_its_declared_type(tmp_path):
    X = np.random.default_rng(0).normal(size=(600, 4)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    result = CliRunner().invoke(main, ["fit", str(tmp_path / "X.npy"), "-o", str(tmp_path / "tok"), "--method",
                                       "rq-kmeans", "--levels", "1", "--codebook-size", "4", "--max-samples", "300",
                                       "--balance-mode", "hard", "-q"])
    assert result.exit_code == 0, result.output  # --max-samples used to arrive as a string and be refused
    from rqgmm import load

    assert load(tmp_path / "tok").max_samples == 300 and load(tmp_path / "tok").balance_mode == "hard"


def test_the_command_line_starts_without_torch_pandas_or_scikit_learn():
    probe = ("import sys, time\nstart = time.perf_counter()\nfrom rqgmm.cli import main\n"
             "print(sorted(m for m in ('torch', 'pandas', 'sklearn') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
    helped = subprocess.run([sys.executable, "-m", "rqgmm.cli", "fit", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert helped.returncode == 0 and re.search(r"--max-iter", helped.stdout)


def test_info_verifies_without_torch(tmp_path):
    from rqgmm import RQGMM

    X = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    RQGMM(n_levels=2, codebook_size=4, progress=False).fit(X).save(tmp_path / "tok")
    probe = ("import sys\nfrom rqgmm.cli import main\n"
             f"main(['info', {str(tmp_path / 'tok')!r}, '--json'], standalone_mode=False)\n"
             "print(sorted(m for m in ('torch', 'pandas', 'sklearn') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().endswith("[]") and '"kind": "RQGMM"' in result.stdout, result.stdout + result.stderr
