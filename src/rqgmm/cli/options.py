"""Options shared by the commands, and tokenizer options generated from the declarations.

Every declared tokenizer parameter (:mod:`rqgmm.quantize.declarations`) becomes a ``rqgmm fit``
option (``max_iter`` -> ``--max-iter``) with its declared one-line help and the methods that take
it; an option given for a method that does not take it is refused. Declaring a parameter adds
the option.
"""

from __future__ import annotations

import warnings

import click

# parameters with an option of their own in every command that builds a tokenizer
COMMON_PARAMETERS = ("n_levels", "codebook_size", "seed", "random_state", "device", "batch_size", "progress")


def int_list(option: str, value: str) -> list[int]:
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated ints, got {value!r}", param_hint=option) from None


def codebook_sizes(value: str) -> int | list[int]:
    sizes = int_list("--codebook-size", value)
    if not sizes or any(size < 1 for size in sizes):
        raise click.BadParameter(f"codebook sizes must be positive ints, got {value!r}")
    return sizes[0] if len(sizes) == 1 else sizes


def show_warnings(quiet: bool) -> None:
    """Warnings as one ``warning: ...`` line on stderr (none with ``quiet``)."""
    def show(message, category, filename, lineno, file=None, line=None):
        if not quiet:
            click.echo(f"warning: {message}", err=True)
    warnings.showwarning = show


def quiet_option(function):
    return click.option("-q", "--quiet", is_flag=True, help="No progress bars, warnings or summaries.")(function)


def overwrite_option(function):
    return click.option("--overwrite", is_flag=True, help="Replace an existing output written by rqgmm.")(function)


def _checked_device(context, parameter, value):
    from rqgmm.quantize.rowops import valid_device

    if value is not None and not valid_device(value):
        raise click.BadParameter(f"expected cpu, cuda, cuda:N or auto, got {value!r}")
    return value


def device_option(function):
    return click.option("--device", default="cpu", show_default=True, callback=_checked_device,
                        help="cpu, cuda, cuda:N or auto.")(function)


def tokenizer_parameters() -> dict[str, dict]:
    """``parameter -> {"methods": {method: default}, "helps": {method: help}, "help": str, "kind": type}``
    for every declared tokenizer parameter outside :data:`COMMON_PARAMETERS`, from the
    declarations (:mod:`rqgmm.quantize.declarations`; the classes and torch are not imported)."""
    from rqgmm.quantize.declarations import METHOD_PARAMETERS

    table: dict[str, dict] = {}
    for method, (_, parameters) in METHOD_PARAMETERS.items():
        for param in parameters:
            if param.name in COMMON_PARAMETERS:
                continue
            entry = table.setdefault(param.name, {"methods": {}, "helps": {}, "kinds": set()})
            entry["methods"][method] = param.default
            entry["helps"][method] = param.help
            entry["kinds"].add(param.kind)
    for entry in table.values():
        texts = list(dict.fromkeys(entry["helps"].values()))
        entry["help"] = texts[0] if len(texts) == 1 else " | ".join(f"{m}: {h.rstrip('.')}"
                                                                     for m, h in entry["helps"].items())
        # one option may mean different types for different methods (RQ-GMM's balance is a strength,
        # RQ-KMeans' deprecated balance a mode name): such an option is read as text, converted per method
        entry["kind"] = entry["kinds"].pop() if len(entry["kinds"]) == 1 else str
    return table


def tokenizer_options(function):
    """Add one option per tokenizer parameter (see :func:`tokenizer_parameters`): its declared help,
    then the methods that take it with their defaults."""
    for name, entry in sorted(tokenizer_parameters().items(), reverse=True):
        kind = entry["kind"]
        shown = {m: ",".join(map(str, d)) if isinstance(d, (tuple, list)) else str(d) for m, d in entry["methods"].items()}
        by_default = {}
        for method, default in shown.items():
            by_default.setdefault(default, []).append(method)
        defaults = "; ".join(f"{', '.join(methods)}: {default}" for default, methods in by_default.items())
        click_type = {int: int, float: float, bool: bool}.get(kind, str)
        function = click.option(f"--{name.replace('_', '-')}", name, type=click_type, default=None,
                                help=f"{entry['help']} [{defaults}]")(function)
    return function


def option_value(name: str, value, kind: type, default):
    """The value of a generated tokenizer option for one method: lists parsed, and text converted
    to the method's own type where the option is shared by methods of different types."""
    option = f"--{name.replace('_', '-')}"
    if kind is list:
        return int_list(option, value)
    if kind is str and isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            return type(default)(value)
        except ValueError:
            raise click.BadParameter(f"expected a number, got {value!r}", param_hint=option) from None
    return value


def tokenizer_from_options(method: str, n_levels: int, codebook_size, common: dict, given: dict):
    """Build the tokenizer of ``method``: ``common`` parameters plus the generated options that
    were given (None = not given); an option the method does not take is a usage error."""
    from rqgmm.errors import InvalidInputError
    from rqgmm.quantize import make_tokenizer

    table = tokenizer_parameters()
    params = {}
    for name, value in given.items():
        if value is None:
            continue
        methods = table[name]["methods"]
        if method not in methods:
            raise click.UsageError(f"--{name.replace('_', '-')} applies to --method {' or '.join(methods)} only,"
                                   f" not {method}")
        params[name] = option_value(name, value, table[name]["kind"], methods[method])
    try:
        tokenizer = make_tokenizer(method, n_levels, codebook_size, **common, **params)
        tokenizer.validate_params()
        return tokenizer
    except InvalidInputError as exc:
        raise click.UsageError(str(exc)) from None
