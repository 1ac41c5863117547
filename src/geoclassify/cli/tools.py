"""``geoclassify sample``, ``evaluate`` and ``layers``: the bundled sample, how good an answer is, a file's layers.

The evaluation (pandas, pyogrio) is imported when ``evaluate`` or ``layers`` runs, not to build the command line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..fields import DEFAULT_LABEL_FIELD
from ..sample import copy_sample
from .group import cli


@cli.command()
@click.argument("folder", default="geoclassify-sample", type=click.Path())
@click.option("--overwrite", is_flag=True, help="Replace files of the same names that differ from the sample's.")
def sample(folder: str, overwrite: bool) -> None:
    """Copy the bundled sample (orthophoto, house footprints, roof-damage model) into FOLDER."""
    target = Path(folder)
    copied = {key: os.fspath(path) for key, path in copy_sample(target, overwrite).items()}
    click.echo(f"Sample copied to {target}/. Classify it with:\n")
    click.echo(
        f"  geoclassify classify --image {copied['image']} --features {copied['features']} \\\n"
        f"      --model {copied['model']} --out {os.fspath(target / 'houses-classified.gpkg')}"
    )


@cli.command("evaluate")
@click.argument("layer")
@click.option("--truth-field", required=True, metavar="FIELD", help="Field holding the true class of each feature.")
@click.option("--label-field", default=DEFAULT_LABEL_FIELD, show_default=True, help="Field the run wrote labels to.")
@click.option("--layer", "layer_name", metavar="NAME", help="Layer of a GeoPackage to evaluate (default: the first).")
@click.option("--model", metavar="MODEL", help="The model that labelled the layer: its classes, in its order.")
@click.option("--plot", type=click.Path(dir_okay=False), metavar="FILE.png", help="Draw the confusion matrix here.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def evaluate_command(
    layer: str,
    truth_field: str,
    label_field: str,
    layer_name: str | None,
    model: str | None,
    plot: str | None,
    as_json: bool,
) -> None:
    """Compare a classified layer's labels with a truth field: accuracy, kappa, per-class figures, the matrix."""
    from ..evaluation import evaluate, format_table, model_classes, save_plot

    classes = model_classes(model) if model else None
    evaluation = evaluate(layer, truth_field, label_field, layer_name, classes)
    if plot:
        save_plot(evaluation, plot)
    click.echo(json.dumps(evaluation.to_dict(), indent=2) if as_json else format_table(evaluation))
    if plot:
        click.echo(f"geoclassify: wrote {plot}", err=True)


@cli.command("layers")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def layers_command(file: str, as_json: bool) -> None:
    """List a vector file's layers: geometry type, feature count, CRS and fields (one line each)."""
    from ..evaluation import describe_layers, format_layers

    layers = describe_layers(file)
    click.echo(json.dumps(layers, indent=2) if as_json else format_layers(file, layers))
