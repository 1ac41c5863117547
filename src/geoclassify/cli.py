"""The ``geoclassify`` command: a thin shell over :mod:`geoclassify.api`.

Every error a user can cause ends as one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from . import __version__
from .api import DEFAULT_LABEL_FIELD, classify_objects, inspect_model
from .arguments import split_assignments
from .errors import GeoclassifyError, GeoclassifyWarning, RunInterrupted
from .packaging import build_package, class_list
from .sample import copy_sample

EXIT_ERROR = 1
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    click.echo(f"geoclassify: warning: {message}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="geoclassify")
def cli() -> None:
    """Classify objects in imagery with deep learning (Esri .dlpk/.emd and ONNX models)."""


@cli.command()
@click.option(
    "--image",
    "images",
    required=True,
    multiple=True,
    metavar="IMAGE",
    help="A raster, a folder of images, a text file listing paths or GDAL URIs, a glob pattern, a VRT, "
    "or a STAC Item/ItemCollection JSON. Repeatable.",
)
@click.option("--model", required=True, help="Model: a .dlpk, an .emd file, or the EMD JSON itself.")
@click.option(
    "--features", help="Feature layer: one chip and one label per feature. Without it each image is one object."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Output file; the format follows the extension (.gpkg, .shp, .geojson, .fgb, .parquet, .csv).",
)
@click.option("--features-layer", metavar="NAME", help="Layer of --features to read (default: the first).")
@click.option("--out-layer", metavar="NAME", help="Layer name in a GeoPackage output (default: the file name).")
@click.option("--label-field", default=DEFAULT_LABEL_FIELD, show_default=True, help="Name of the class label field.")
@click.option(
    "--field-prefix",
    default="",
    metavar="TEXT",
    help="Put TEXT before the name of every field the run adds (e.g. m2_ gives m2_ClassLabel, m2_Confidence, ...), "
    "so a layer classified before can carry a second model's results.",
)
@click.option(
    "--argument",
    "arguments",
    multiple=True,
    metavar="NAME=VALUE",
    help="Model argument, repeatable (see `geoclassify inspect MODEL`).",
)
@click.option(
    "--processing-mode",
    default="mosaic",
    show_default=True,
    metavar="mosaic|items",
    help="With features and several images: one mosaic, or each image separately (one row per feature "
    "and image, with ItemID).",
)
@click.option("--recursive", is_flag=True, help="Look for images in subfolders of a folder given to --image.")
@click.option("--asset", metavar="KEY", help="Asset of each STAC item to classify.")
@click.option(
    "--extent",
    nargs=4,
    type=float,
    metavar="XMIN YMIN XMAX YMAX",
    help="Only classify (and write) the features or images that meet this rectangle.",
)
@click.option("--extent-crs", metavar="CRS", help="CRS of --extent (default: the raster's).")
@click.option("--cell-size", type=float, metavar="SIZE", help="Cut chips at this cell size (raster CRS units).")
@click.option(
    "--resampling",
    default="nearest",
    show_default=True,
    metavar="nearest|bilinear|cubic",
    help="How images are warped onto a mosaic's grid or to --cell-size (Esri's Resampling Method).",
)
@click.option("--out-crs", metavar="CRS", help="Coordinate system of the output (e.g. EPSG:4326).")
@click.option("--parallel-factor", metavar="N|P%", help="Worker processes, or a share of the cores (e.g. 50%).")
@click.option("--retries", type=int, default=0, show_default=True, help="Run a failed batch again this many times.")
@click.option("--recycle-interval", type=int, metavar="N", help="Replace worker processes after N batches.")
@click.option(
    "--scheduler",
    metavar="tcp://HOST:PORT|local[:N]",
    help="Run on a Dask cluster: its scheduler's address, or local[:N] for a local one (needs geoclassify[dask]).",
)
@click.option("--trust-code", is_flag=True, help="Allow a package's Python inference function to run (it is code).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run writing the same --out.")
@click.option("--overwrite", is_flag=True, help="Replace the output if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def classify(
    images: tuple[str, ...],
    model: str,
    features: str | None,
    out: str,
    features_layer: str | None,
    out_layer: str | None,
    label_field: str,
    field_prefix: str,
    arguments: tuple[str, ...],
    processing_mode: str,
    recursive: bool,
    asset: str | None,
    extent: tuple[float, float, float, float] | None,
    extent_crs: str | None,
    cell_size: float | None,
    resampling: str,
    out_crs: str | None,
    parallel_factor: str | None,
    retries: int,
    recycle_interval: int | None,
    scheduler: str | None,
    trust_code: bool,
    resume: bool,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Label every feature (or every image) with the class the model sees in its image chip."""
    summary = classify_objects(
        images[0] if len(images) == 1 else list(images),
        model,
        features,
        out,
        features_layer=features_layer,
        out_layer=out_layer,
        label_field=label_field,
        field_prefix=field_prefix,
        arguments=split_assignments(arguments),
        overwrite=overwrite,
        progress=not quiet and sys.stderr.isatty(),
        recursive=recursive,
        asset=asset,
        processing_mode=processing_mode,
        extent=extent or None,
        extent_crs=extent_crs,
        cell_size=cell_size,
        resampling=resampling,
        out_crs=out_crs,
        trust_code=trust_code,
        parallel_factor=parallel_factor,
        retries=retries,
        recycle_interval=recycle_interval,
        resume=resume,
        scheduler=scheduler,
    )
    click.echo(f"geoclassify: {summary.line()}", err=True)


@cli.command()
@click.argument("model")
@click.option("--argument", "arguments", multiple=True, metavar="NAME=VALUE", help="Show the model with this argument.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--trust-code", is_flag=True, help="Allow a package's Python inference function to run (it is code).")
def inspect(model: str, arguments: tuple[str, ...], as_json: bool, trust_code: bool) -> None:
    """Show what a model is: framework, chip size, bands, crop mode, classes, normalisation, arguments."""
    info = inspect_model(model, split_assignments(arguments), trust_code=trust_code)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(_format_inspect(info))


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


@cli.command()
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .dlpk to write.")
@click.option(
    "--emd",
    "emd_file",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON file of EMD keys (Esri names); the options below override it.",
)
@click.option("--classes", help="Class names in the model's output order, comma-separated.")
@click.option("--class-values", help="Class values, comma-separated (default 1, 2, ...).")
@click.option("--chip-size", help="Chip size in pixels: N or WIDTHxHEIGHT (default: the model's input size).")
@click.option("--bands", help="ExtractBands: 0-based band indexes or names, comma-separated (default: all).")
@click.option("--crop", type=click.Choice(["fixed", "envelope"]), help="CropSizeFixed 1 (fixed) or 0 (envelope).")
@click.option("--blacken/--no-blacken", default=None, help="BlackenAroundFeature.")
@click.option(
    "--normalization-stats",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON file of NormalizationStats (band_min_values, ...).",
)
@click.option("--image-space", type=click.Choice(["MAP_SPACE", "PIXEL_SPACE"]), help="ImageSpaceUsed.")
@click.option("--model-output", type=click.Choice(["logits", "probabilities"]), help="What the model returns.")
@click.option("--batch-size", type=int, help="BatchSize.")
@click.option("--name", help="ModelName (default: the model file's name).")
@click.option("--overwrite", is_flag=True, help="Replace the package if it exists.")
def package(
    model_file: str,
    out: str,
    emd_file: str | None,
    classes: str | None,
    class_values: str | None,
    chip_size: str | None,
    bands: str | None,
    crop: str | None,
    blacken: bool | None,
    normalization_stats: str | None,
    image_space: str | None,
    model_output: str | None,
    batch_size: int | None,
    name: str | None,
    overwrite: bool,
) -> None:
    """Build a .dlpk from an ONNX or TorchScript file; it is loaded and run once before it is written."""
    emd: dict[str, Any] = _read_json(emd_file, "--emd") if emd_file else {}
    if classes:
        values = _integers(class_values, "--class-values") if class_values else None
        emd["Classes"] = class_list([c.strip() for c in classes.split(",")], values)
    if chip_size:
        width, _, height = chip_size.lower().partition("x")
        emd["ImageWidth"], emd["ImageHeight"] = _integers(f"{width},{height or width}", "--chip-size")
    if bands:
        emd["ExtractBands"] = [int(b) if b.strip().isdigit() else b.strip() for b in bands.split(",")]
    settings = {
        "CropSizeFixed": None if crop is None else int(crop == "fixed"),
        "BlackenAroundFeature": None if blacken is None else int(blacken),
        "ImageSpaceUsed": image_space,
        "ModelOutput": model_output,
        "BatchSize": batch_size,
        "ModelName": name,
    }
    emd.update({k: v for k, v in settings.items() if v is not None})
    if normalization_stats:
        emd["NormalizationStats"] = _read_json(normalization_stats, "--normalization-stats")
    written = build_package(model_file, out, emd, overwrite=overwrite)
    click.echo(
        f"geoclassify: wrote {out} ({written['Framework']}, {written['ImageWidth']} x {written['ImageHeight']} "
        f"chips, bands {written['ExtractBands']}, classes {', '.join(c['Name'] for c in written['Classes'])})",
        err=True,
    )


def _integers(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a list of whole numbers", param_hint=option) from None


def _read_json(path: str, option: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{path} is not JSON ({exc.msg} at line {exc.lineno})", param_hint=option) from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path} must hold a JSON object", param_hint=option)
    return data


def _format_inspect(info: dict[str, Any]) -> str:
    chip = info["chip_size"]
    runtime = info["runtime"]
    lines = [
        f"Model        {info['model_name'] or '(unnamed)'}  [{info['source']}]",
        f"Framework    {info['framework']} ({runtime.get('runtime')})",
        f"Type         {info['model_type']}",
        *(
            [f"Function     {info['inference_function']} (Esri Python inference function)"]
            if info.get("inference_function")
            else []
        ),
        f"Chip         {chip['width']} x {chip['height']} pixels (width x height), "
        + (
            "fixed size around each feature (CropSizeFixed 1)"
            if info["crop_size_fixed"]
            else "feature envelope resized to the chip (CropSizeFixed 0)"
        ),
        f"Bands        {info['extract_bands']} (0-based ExtractBands)",
        f"Blacken      {'yes: pixels outside the polygon are 0' if info['blacken_around_feature'] else 'no'}",
        f"Image space  {info['image_space']}",
        f"Output       {info['model_output']}",
    ]
    norm = info["normalisation"]
    if norm["kind"] == "ImageNet":
        lines.append("Normalise    ImageNet mean/std on 0-255 (no NormalizationStats)")
    else:
        lines.append(f"Normalise    NormalizationStats: {norm['formula']}")
    if info["data_range"]:
        lines.append(f"Data range   {info['data_range']}")
    cells = info["cell_size_range"]
    if cells["min"] or cells["max"]:
        lines.append(f"Cell sizes   trained from {cells['min']} to {cells['max']}")
    lines.append("Classes      position  value  name  colour")
    for c in info["classes"]:
        lines.append(f"             {c['position']:>8}  {c['value']:>5}  {c['name']}  {c['color'] or ''}")
    lines.append("Arguments    (--argument NAME=VALUE)")
    for a in info["arguments"]:
        lines.append(f"  {a['name']} ({a['type']}, default {a['default']!r}): {a['description']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command and turn every expected failure into one line and an exit code."""
    warnings.showwarning = _show_warning
    # Users see geoclassify's own warnings, once each; libraries' deprecation notes are for developers.
    warnings.simplefilter("ignore")
    warnings.simplefilter("default", GeoclassifyWarning)
    _stop_on_sigterm()
    try:
        cli.main(args=argv, prog_name="geoclassify", standalone_mode=False)
    except GeoclassifyError as exc:
        click.echo(f"geoclassify: error: {exc}", err=True)
        return EXIT_ERROR
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        # click turns Ctrl-C into Abort; the run's own message, if any, rides along as its cause.
        cause = exc if isinstance(exc, RunInterrupted) else exc.__cause__ or exc.__context__
        if isinstance(cause, RunInterrupted):
            click.echo(f"geoclassify: {cause}; no output was written yet", err=True)
        else:
            click.echo("geoclassify: interrupted; no output was written", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except Exception as exc:
        if os.environ.get("GEOCLASSIFY_DEBUG"):
            raise
        click.echo(
            f"geoclassify: internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in geoclassify; run again with GEOCLASSIFY_DEBUG=1 for the traceback and report it.",
            err=True,
        )
        return EXIT_INTERNAL
    return 0


def _stop_on_sigterm() -> None:
    """SIGTERM (``kill``, a service manager) stops a run as Ctrl-C does: results so far are saved, worker
    processes are shut down, and the message says how to resume. Python's default would end the process on the
    spot, skipping all of that."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (an embedding program): keep its handler
        signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":
    sys.exit(main())
