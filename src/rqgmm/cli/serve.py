"""``rqgmm serve``: the HTTP service (encode, stable IDs from the registry, CTR scores)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("tokenizer", type=click.Path(path_type=Path))
@click.option("--registry", default=None,
              help="ID registry: an SQLite path or a postgresql:// URL (its tables created if missing); enables"
                   " /v1/items. Several workers or replicas share one PostgreSQL registry.")
@click.option("--ctr-run", type=click.Path(path_type=Path), default=None,
              help="A saved CTR run (`rqgmm ctr train -o RUN`): enables /v1/score.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --token-file.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="TCP port (0: any free port).")
@click.option("--token-file", type=click.Path(path_type=Path), default=None,
              help="File holding the bearer token that write and admin endpoints require.")
@click.option("--max-body-mib", type=float, default=64.0, show_default=True, help="Largest request body.")
@click.option("--max-items", type=int, default=100_000, show_default=True, help="Most rows per request.")
@click.option("--batch-wait-ms", type=float, default=2.0, show_default=True,
              help="How long an encode waits for concurrent requests to batch with.")
@click.option("--max-batch", type=int, default=4096, show_default=True, help="Most rows per encode batch.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="torch threads for encoding and scoring: 1 keeps many small concurrent requests fast (the"
                   " event loop and the batches do not fight over cores); raise it for few large batches.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes serving one port (uvicorn's supervisor), each with its own encode batcher; they share"
                   " the registry (PostgreSQL, or one SQLite file on this host) and one set of Prometheus metrics."
                   " SIGTERM shuts them down gracefully.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info"]), default="warning",
              show_default=True, help="uvicorn's log level (info logs every request).")
def serve(tokenizer, registry, ctr_run, host, port, token_file, max_body_mib, max_items, batch_wait_ms, max_batch,
          threads, workers, log_level):
    """Serve TOKENIZER over HTTP: POST /v1/encode, /v1/items, /v1/score; GET /v1/items/ID,
    /v1/tokenizer, /healthz, /metrics; POST /v1/admin/reload or SIGHUP swaps in a new version."""
    try:
        import uvicorn

        from rqgmm.serve.app import build_app
        from rqgmm.serve.http import ServiceSettings, is_loopback, read_token
    except ImportError as exc:
        raise click.ClickException(f"rqgmm serve needs the serve extra ({exc.name} is missing):"
                                   " pip install 'rqgmm[serve]'") from None
    token = None if token_file is None else read_token(token_file)
    if token is None and not is_loopback(host):
        raise click.BadParameter(f"binding {host} exposes the service beyond this machine; give --token-file",
                                 param_hint="--host")
    for option, value in (("--max-items", max_items), ("--max-batch", max_batch), ("--threads", threads)):
        if value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}", param_hint=option)
    if not max_body_mib > 0 or batch_wait_ms < 0:
        raise click.BadParameter("--max-body-mib must be > 0 and --batch-wait-ms >= 0")
    settings = ServiceSettings(str(tokenizer), None if registry is None else str(registry),
                               None if ctr_run is None else str(ctr_run), token, int(max_body_mib * 2**20),
                               max_items, batch_wait_ms, max_batch)
    import torch

    torch.set_num_threads(threads)
    if workers > 1:
        from rqgmm.serve.workers import run_workers

        run_workers(settings, host=host, port=port, workers=workers, threads=threads, log_level=log_level)
        return
    app = build_app(settings)
    click.echo(f"serving {app.state.service.versions.current.version} on http://{host}:{port}", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "info")


COMMANDS = (serve,)
