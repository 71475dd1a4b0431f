"""``rqgmm retrieval``: generative retrieval over semantic IDs (TIGER-style) against SASRec and
popularity on MovieLens-100k."""

from __future__ import annotations

from pathlib import Path

import click

from rqgmm.cli.options import quiet_option


@click.group()
def retrieval() -> None:
    """Generative retrieval: test semantic IDs the way the field does (Recall/NDCG@K on items)."""


@retrieval.command("study")
@click.option("--tokenizers", default="rq-kmeans-3x256,rq-gmm-3x256", show_default=True,
              help="Comma-separated method-LxK: rq-kmeans, rq-gmm (diag), rq-gmm-tied, balanced-rq-kmeans, rq-vae;"
                   " every ID gets a collision suffix.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seeds (split, tokenizer, model).")
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True,
              help="Epochs at most of the generative model (early stopping on validation Recall@10).")
@click.option("--sasrec-epochs", type=click.IntRange(1), default=200, show_default=True,
              help="SASRec's epochs at most (patience 10; cheap to validate, so it is let converge).")
@click.option("--history", type=click.IntRange(1), default=20, show_default=True, help="Items a model reads.")
@click.option("--beams", type=click.IntRange(1), default=10, show_default=True, help="Beam width of generation.")
@click.option("--quick", is_flag=True, help="One seed, RQ-KMeans and RQ-GMM 3 x 256, 3 epochs (a smoke run).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Runs go to OUTPUT/retrieval[-quick]; finished runs there are reused.")
@click.option("--markdown", type=click.Path(path_type=Path), default=None,
              help="Also write the stamped results document (e.g. docs/results/retrieval.md).")
@quiet_option
def study(tokenizers, seeds, epochs, sasrec_epochs, history, beams, quick, output, markdown, quiet):
    """Run the generative-retrieval study on MovieLens-100k (leave-last-out; 10% of items held out
    as cold-start targets) and print its table."""
    from rqgmm.retrieval.study import RetrievalStudy, run_study, write_document
    from rqgmm.retrieval.train import RetrievalTraining

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {seeds!r}", param_hint="--seeds") from None
    names = [t.strip() for t in tokenizers.split(",") if t.strip()]
    training = RetrievalTraining(max_epochs=epochs, history=history, beams=beams, sasrec_max_epochs=sasrec_epochs)
    config = RetrievalStudy(tokenizers=names, seeds=seed_list, training=training)
    if quick:
        config = RetrievalStudy(name="retrieval-quick", tokenizers=["rq-kmeans-3x256", "rq-gmm-3x256"], seeds=[0],
                                training=RetrievalTraining(max_epochs=3, patience=1, history=history, beams=beams,
                                                           validation_users=150))
    from rqgmm.retrieval.study import build_tokenizer

    for name in config.tokenizers:
        try:
            build_tokenizer(name, 0).validate_params()
        except Exception as error:  # noqa: BLE001 - one line naming the bad entry
            raise click.BadParameter(f"{name}: {error}", param_hint="--tokenizers") from None
    results = run_study(config, output, log=(lambda *_: None) if quiet else click.echo, progress=not quiet and None)
    document = write_document(results, markdown)
    if not quiet:
        click.echo(document)


COMMANDS = (retrieval,)
