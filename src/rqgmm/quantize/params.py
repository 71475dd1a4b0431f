"""Hyperparameters declared once: type, default, allowed values, one line of help.

A tokenizer class lists its :class:`Param` declarations in ``parameters``; from them come its
``__init__`` (keyword hyperparameters, scikit-learn's convention), ``get_params``, validation
(:meth:`Declared.validate_params`), the generated ``rqgmm fit`` options and the parameter tables
of the docs (:func:`parameter_table`). Nothing is parsed out of docstrings. This module imports
no torch, so the command line can describe tokenizers without loading it.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from rqgmm.errors import InvalidInputError


@dataclass(frozen=True)
class Param:
    """One hyperparameter. ``allowed`` completes "must be ..." in an error; ``help`` is the one
    line shown by ``--help``; ``details`` adds what a docstring reader needs beyond it.
    ``alias_of`` marks a deprecated spelling of another parameter (default None = not given)."""

    name: str
    default: Any
    check: Callable[[Any], bool]
    allowed: str
    help: str
    details: str = ""
    positional: bool = False
    alias_of: str | None = None
    value_type: type | None = None  # what a command-line value is read as, when the default does not say

    @property
    def kind(self) -> type:
        """The type a command-line value is read as."""
        if self.value_type is not None:
            return self.value_type
        if isinstance(self.default, (list, tuple)):
            return list
        if self.default is None or isinstance(self.default, str):
            return str
        return type(self.default)

    def but(self, **changes) -> "Param":
        """This declaration with some fields changed (a class's own default, say)."""
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------ value checks
def positive_int(value) -> bool:
    """True for an int > 0 (not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


def one_of(*choices) -> tuple[Callable[[Any], bool], str]:
    """(check, allowed) for a choice among ``choices``."""
    return (lambda value: value in choices), f"one of {choices}"


def in_range(low: float, high: float = math.inf, *, integer: bool = False, low_open: bool = False,
             high_open: bool = False) -> tuple[Callable[[Any], bool], str]:
    """(check, allowed) for a number (an int with ``integer``) in a range."""
    def check(value) -> bool:
        if integer and not (isinstance(value, (int, np.integer)) and not isinstance(value, bool)):
            return False
        if not number(value):
            return False
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return above and below
    what = "an int" if integer else "a number"
    if high == math.inf:
        return check, f"{what} {'>' if low_open else '>='} {low:g}"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return check, f"{what} in {left}{low:g}, {high:g}{right}"


# magnitudes (root mean square of the largest coordinate) float32 distance products handle safely
MAX_SCALE, MIN_SCALE = 1e12, 1e-12
MAX_LEVELS = 64  # residual levels a tokenizer may declare: bounds work before any allocation
MAX_CODEBOOK = 1 << 20  # codes per level, likewise


def _codebook_size(value) -> bool:
    sizes = [value] if not isinstance(value, (list, tuple)) else list(value)
    return 0 < len(sizes) <= MAX_LEVELS and all(positive_int(k) and k <= MAX_CODEBOOK for k in sizes)


def _seed(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < 2**63


def _random_state(value) -> bool:
    return value is None or _seed(value) or isinstance(value, (np.random.RandomState, np.random.Generator))


def _device(value) -> bool:
    """"auto", or a CPU / CUDA device as a string or a ``torch.device`` (read without torch)."""
    value = str(value) if type(value).__name__ == "device" else value
    return isinstance(value, str) and (value in ("cpu", "cuda", "auto") or (
        value.startswith(("cuda:", "cpu:")) and value[value.index(":") + 1:].isdigit()))


# ------------------------------------------------------------------ shared declarations
N_LEVELS = Param("n_levels", 3, *in_range(1, MAX_LEVELS, integer=True), "Residual levels L.", positional=True)
CODEBOOK_SIZE = Param("codebook_size", 256, _codebook_size,
                      f"a positive int up to {MAX_CODEBOOK}, or a list of them, one per level",
                      "Codes per level: K, or one K per level.", positional=True)
MAX_ITER = Param("max_iter", 100, *in_range(1, 1_000_000, integer=True), "Iterations per level at most.")
TOL = Param("tol", 1e-3, *in_range(0), "Stop a level when its objective improves by less than this.")
RANDOM_STATE = Param("random_state", 0, _random_state,
                     "None (fresh entropy), an int in [0, 2**63), a numpy RandomState or Generator",
                     "Seed of every random choice: same seed, same data, same codes.")
SEED = Param("seed", None, lambda v: v is None or _seed(v), "None or an int in [0, 2**63)",
             "Deprecated spelling of random_state.", alias_of="random_state")
DEVICE = Param("device", "cpu", _device, "'cpu', 'cuda', 'cuda:N' or 'auto'", "Where to compute.")
BATCH_SIZE = Param("batch_size", 16384, positive_int, "a positive int", "Rows per chunk (bounds memory).")
MAX_SAMPLES = Param("max_samples", None, lambda v: v is None or positive_int(v), "None (all rows) or a positive int",
                    "Fit each level on a seeded sample of this many rows, then encode all (None: all rows).",
                    value_type=int)
PRECISION = Param("precision", "float32", *one_of("float32", "float64"),
                  "Compute dtype of the distance products (statistics are always float64).")
CACHE_MIB = Param("cache_mib", 1024, *in_range(0), "Memory (MiB) for keeping a level's working rows between"
                  " iterations; larger inputs are re-read chunk by chunk.", value_type=float)
PROGRESS = Param("progress", None, lambda v: v is None or isinstance(v, bool), "True, False or None (auto)",
                 "Show progress bars (None: only on a terminal).")


def draw_seed(state) -> int:
    """The seed of one fit from ``random_state``: an int as it is, one draw from a numpy
    RandomState / Generator (as scikit-learn does), fresh entropy for None."""
    if isinstance(state, np.random.RandomState):
        return int(state.randint(0, 2**31 - 1))
    if isinstance(state, np.random.Generator):
        return int(state.integers(0, 2**63 - 1))
    if state is not None:
        return int(state)
    return int(np.random.SeedSequence().entropy % (2**63 - 1))


def codebook_sizes(values: dict[str, Any]) -> list[int]:
    """Codes per level from hyperparameter values (no ``n_levels``, as VQ-VAE: one level)."""
    size, n_levels = values["codebook_size"], values.get("n_levels", 1)
    return [int(k) for k in size] if isinstance(size, (list, tuple)) else [int(size)] * int(n_levels)


def check_sizes(values: dict[str, Any], owner: str) -> None:
    """The checks spanning several parameters: one codebook size per level, and ``max_samples``
    at least the largest codebook."""
    sizes = codebook_sizes(values)
    if len(sizes) != values.get("n_levels", 1):
        raise InvalidInputError(f"{owner}: codebook_size lists {len(sizes)} sizes but n_levels={values['n_levels']}")
    max_samples = values.get("max_samples")
    if max_samples is not None and max_samples < max(sizes):
        raise InvalidInputError(f"{owner}: max_samples={max_samples} is below the largest codebook_size={max(sizes)};"
                                " a level needs at least one sampled row per code")


def check_values(parameters: tuple[Param, ...], values: dict[str, Any], owner: str) -> None:
    """Refuse a value outside what its declaration allows, naming it (a name that is not declared
    is the caller's to refuse)."""
    for param in parameters:
        value = values.get(param.name, param.default)
        if not param.check(value):
            raise InvalidInputError(f"{owner}: parameter {param.name} must be {param.allowed}, got {value!r}")


class Declared:
    """Mixin: builds ``__init__`` and ``get_params`` from the class's ``parameters``."""

    parameters: ClassVar[tuple[Param, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "parameters" in cls.__dict__:
            names = [p.name for p in cls.parameters]
            if len(set(names)) != len(names):
                raise TypeError(f"{cls.__name__}: a parameter is declared twice in {names}")
            cls.__init__ = _make_init(cls.__name__, cls.parameters)
            cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n\n" + _parameters_section(cls.parameters)

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p.name for p in cls.parameters]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters exactly as passed to ``__init__`` (scikit-learn's protocol; a tokenizer
        holds no sub-estimators, so ``deep`` adds nothing)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "Declared":
        """Set hyperparameters (scikit-learn's protocol); returns ``self``."""
        unknown = set(params) - set(self._param_names())
        if unknown:
            raise InvalidInputError(f"Invalid parameter(s) {sorted(unknown)} for {type(self).__name__}; valid"
                                    f" parameters are {self._param_names()}")
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def validate_params(self, *, warn: bool = True) -> None:
        """Check every hyperparameter against its declaration; a deprecated spelling may not
        contradict the parameter it stands for (and warns, with ``warn``)."""
        check_values(self.parameters, self.get_params(), type(self).__name__)
        for param in self.parameters:
            if param.alias_of is None or getattr(self, param.name) is None:
                continue
            canonical = next(p for p in self.parameters if p.name == param.alias_of)
            if warn:
                warnings.warn(f"{type(self).__name__}: {param.name} is deprecated and will be removed in the next"
                              f" release; use {param.alias_of}", FutureWarning, stacklevel=3)
            given = getattr(self, param.alias_of)
            if given is not canonical.default and given != canonical.default:
                raise InvalidInputError(f"{type(self).__name__}: {param.name}={getattr(self, param.name)!r} and"
                                        f" {param.alias_of}={given!r} both given; use {param.alias_of} alone")

    def _param(self, name: str):
        """The effective value of ``name``: its deprecated alias when that was given."""
        for param in self.parameters:
            if param.alias_of == name and getattr(self, param.name) is not None:
                return getattr(self, param.name)
        return getattr(self, name)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def _make_init(owner: str, parameters: tuple[Param, ...]):
    positional = [p.name for p in parameters if p.positional]
    defaults = {p.name: p.default for p in parameters}

    def __init__(self, *args, **kwargs):
        if len(args) > len(positional):
            raise TypeError(f"{owner}() takes at most {len(positional)} positional argument(s)"
                            f" ({', '.join(positional)}), {len(args)} given")
        values = dict(defaults)
        for name, value in zip(positional, args):
            if name in kwargs:
                raise TypeError(f"{owner}() got multiple values for argument {name!r}")
            values[name] = value
        for name, value in kwargs.items():
            if name not in values:
                raise TypeError(f"{owner}() got an unexpected keyword argument {name!r}")
            values[name] = value
        for name, value in values.items():
            setattr(self, name, value)

    kinds = {True: inspect.Parameter.POSITIONAL_OR_KEYWORD, False: inspect.Parameter.KEYWORD_ONLY}
    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(p.name, kinds[p.positional], default=p.default)
           for p in sorted(parameters, key=lambda p: not p.positional)])
    __init__.__doc__ = f"Keyword hyperparameters of {owner}; see the class docstring."
    return __init__


def _parameters_section(parameters: tuple[Param, ...]) -> str:
    lines = ["    Parameters (generated from the declarations)", "    " + "-" * 44]
    for p in parameters:
        text = f"{p.help} {p.details}".strip()
        lines.append(f"    {p.name} = {p.default!r}: {text} Must be {p.allowed}.")
    return "\n".join(lines)


def parameter_table(parameters: tuple[Param, ...]) -> str:
    """A Markdown table of hyperparameter declarations (name, default, allowed, meaning)."""
    rows = ["| parameter | default | allowed | meaning |", "|---|---|---|---|"]
    for p in parameters:
        meaning = f"{p.help} {p.details}".strip().replace("|", "\\|")
        rows.append(f"| `{p.name}` | `{p.default!r}` | {p.allowed.replace('|', '/')} | {meaning} |")
    return "\n".join(rows)
