"""``geoclassify inspect``, ``package`` and ``convert``: what a model is, and making packages.

Each command imports what it runs (the model runtime, the converter and its onnx) in its body, so building the
command line for ``--help`` or another command does not.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..model.arguments import split_assignments
from .group import cli

if TYPE_CHECKING:
    from ..model.building import MeanStd


@cli.command()
@click.argument("model")
@click.option("--argument", "arguments", multiple=True, metavar="NAME=VALUE", help="Show the model with this argument.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--trust-code", is_flag=True, help="Allow a package's Python inference function to run (it is code).")
def inspect(model: str, arguments: tuple[str, ...], as_json: bool, trust_code: bool) -> None:
    """Show what a model is: framework, chip size, bands, crop mode, classes, normalisation, arguments."""
    from ..api import inspect_model

    info = inspect_model(model, split_assignments(arguments), trust_code=trust_code)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(_format_inspect(info))


@cli.command()
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="The .dlpk to write (its folder must exist)."
)
@click.option(
    "--emd",
    "emd_file",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON file of EMD keys (Esri names); the options below override it, and their defaults apply only to "
    "keys it does not give.",
)
@click.option(
    "--classes",
    help="Class names in the model's output order, comma-separated (for names holding commas: --classes-file).",
)
@click.option(
    "--classes-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Text file of class names in the model's output order, one per line (blank lines skipped).",
)
@click.option("--class-values", show_default="1, 2, ...", help="Class values, comma-separated, one per class.")
@click.option(
    "--chip-size",
    show_default="the model's input size",
    help="Chip size in pixels: N or WIDTHxHEIGHT (ImageWidth, ImageHeight).",
)
@click.option(
    "--bands",
    show_default="0, 1, ... for each band of the model's input",
    help="ExtractBands: 0-based raster band indexes or band names, comma-separated.",
)
@click.option(
    "--crop",
    type=click.Choice(["fixed", "envelope"]),
    default="fixed",
    show_default=True,
    help="CropSizeFixed. fixed (1): a chip of the chip size centred on each feature, whatever the feature's size; "
    "without features, each image's centre is cut to the chip size (a centre crop, not the whole image). "
    "envelope (0): each feature's envelope (without features, the whole image) resized to the chip size.",
)
@click.option(
    "--blacken/--no-blacken",
    default=False,
    show_default=True,
    help="BlackenAroundFeature: pixels outside each polygon are 0 in its chip.",
)
@click.option(
    "--normalization-stats",
    type=click.Path(exists=True, dir_okay=False),
    show_default="ImageNet mean/std on 0-255, for 3 bands",
    help="JSON file of Esri NormalizationStats (band_min_values, band_max_values, scaled_mean_values, "
    "scaled_std_values), indexed by raster band.",
)
@click.option(
    "--mean",
    metavar="M[,M...]",
    help="torch-style normalisation (x / SCALE - mean) / std: the mean per band in chip band order, or one for all "
    "(e.g. --mean 127 --std 128; or --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --scale 255). Written as "
    "NormalizationStats; needs --std.",
)
@click.option("--std", metavar="S[,S...]", help="The standard deviation per band (or one for all), for --mean.")
@click.option(
    "--scale",
    type=float,
    default=1.0,
    show_default=True,
    help="What pixel values are divided by before --mean and --std apply: 1 when they are in pixel values, 255 "
    "for statistics on 0-1 of 8-bit imagery.",
)
@click.option(
    "--image-space",
    type=click.Choice(["MAP_SPACE", "PIXEL_SPACE"]),
    default="MAP_SPACE",
    show_default=True,
    help="ImageSpaceUsed.",
)
@click.option(
    "--model-output",
    type=click.Choice(["logits", "probabilities"]),
    show_default="none: probabilities when each row is non-negative and sums to 1, else logits",
    help="ModelOutput: what the model returns.",
)
@click.option("--batch-size", type=int, show_default="none: 16 chips at run time", help="BatchSize.")
@click.option("--name", show_default="the model file's name", help="ModelName.")
@click.option("--overwrite", is_flag=True, help="Replace the package if it exists.")
@click.pass_context
def package(
    ctx: click.Context,
    model_file: str,
    out: str,
    emd_file: str | None,
    classes: str | None,
    classes_file: str | None,
    class_values: str | None,
    chip_size: str | None,
    bands: str | None,
    crop: str,
    blacken: bool,
    normalization_stats: str | None,
    mean: str | None,
    std: str | None,
    scale: float,
    image_space: str,
    model_output: str | None,
    batch_size: int | None,
    name: str | None,
    overwrite: bool,
) -> None:
    """Build a .dlpk from an ONNX or TorchScript file; it is loaded and run once before it is written."""
    from ..model.building import build_package, class_list, read_class_names

    def given(option: str) -> bool:
        """Typed on the command line: only then does an option with a default override the --emd file."""
        return ctx.get_parameter_source(option) is not click.core.ParameterSource.DEFAULT

    emd: dict[str, Any] = _read_json(emd_file, "--emd") if emd_file else {}
    origins = {key: f"--emd {emd_file}" for key in emd}
    if classes and classes_file:
        raise click.UsageError("give --classes or --classes-file, not both")
    names = (
        read_class_names(classes_file) if classes_file else [c.strip() for c in classes.split(",")] if classes else None
    )
    if names is not None:
        values = _integers(class_values, "--class-values") if class_values else None
        emd["Classes"] = class_list(names, values)
        origins["Classes"] = f"--classes-file {classes_file}" if classes_file else "--classes"
    elif class_values:
        raise click.UsageError("--class-values needs --classes or --classes-file")
    if chip_size:
        width, _, height = chip_size.lower().partition("x")
        emd["ImageWidth"], emd["ImageHeight"] = _integers(f"{width},{height or width}", "--chip-size")
        origins["ImageWidth"] = origins["ImageHeight"] = f"--chip-size {chip_size}"
    if bands:
        emd["ExtractBands"] = [int(b) if b.strip().isdigit() else b.strip() for b in bands.split(",")]
        origins["ExtractBands"] = f"--bands {bands}"
    settings = {
        "CropSizeFixed": ("--crop", int(crop == "fixed") if given("crop") else None),
        "BlackenAroundFeature": ("--blacken", int(blacken) if given("blacken") else None),
        "ImageSpaceUsed": ("--image-space", image_space if given("image_space") else None),
        "ModelOutput": ("--model-output", model_output),
        "BatchSize": ("--batch-size", batch_size),
        "ModelName": ("--name", name),
    }
    for key, (option, value) in settings.items():
        if value is not None:
            emd[key], origins[key] = value, option
    if normalization_stats:
        emd["NormalizationStats"] = _read_json(normalization_stats, "--normalization-stats")
        origins["NormalizationStats"] = f"--normalization-stats {normalization_stats}"
    mean_std = _mean_std(mean, std, scale if given("scale") else None, normalization_stats)
    written = build_package(model_file, out, emd, overwrite=overwrite, origins=origins, mean_std=mean_std)
    click.echo(
        f"geoclassify: wrote {out} ({written['Framework']}, {written['ImageWidth']} x {written['ImageHeight']} "
        f"chips, bands {written['ExtractBands']}, classes {_shown_names(written['Classes'])})",
        err=True,
    )


def _mean_std(mean: str | None, std: str | None, scale: float | None, stats_file: str | None) -> MeanStd | None:
    if mean is None and std is None:
        if scale is not None:
            raise click.UsageError("--scale applies to --mean and --std; give them too")
        return None
    if mean is None or std is None:
        raise click.UsageError("--mean and --std go together: give both")
    if stats_file:
        raise click.UsageError("give --mean/--std or --normalization-stats, not both")
    means, stds = _numbers(mean, "--mean"), _numbers(std, "--std")
    if any(s == 0 for s in stds):
        raise click.BadParameter(f"{std!r}: a standard deviation of 0 divides by zero", param_hint="--std")
    if scale is not None and not 0 < scale < float("inf"):
        raise click.BadParameter(f"{scale!r}: give a number above 0", param_hint="--scale")
    from ..model.building import MeanStd

    return MeanStd(tuple(means), tuple(stds), 1.0 if scale is None else scale)


def _numbers(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a list of numbers", param_hint=option) from None
    if not all(math.isfinite(v) for v in values):
        raise click.BadParameter(f"{text!r}: give finite numbers", param_hint=option)
    return values


def _shown_names(classes: list[dict[str, Any]], limit: int = 10) -> str:
    names = [str(c["Name"]) for c in classes]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@cli.command()
@click.argument("model")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The ONNX package (.dlpk) to write.")
@click.option("--overwrite", is_flag=True, help="Replace the package if it exists.")
def convert(model: str, out: str, overwrite: bool) -> None:
    """Rewrite an arcgis.learn FeatureClassifier package (.dlpk or .emd) as an ONNX package of the same model."""
    from ..model.backends.arcgis_learn.export import write_onnx_package

    written = write_onnx_package(model, out, overwrite=overwrite)
    click.echo(
        f"geoclassify: wrote {out} (ONNX, {written['ImageWidth']} x {written['ImageHeight']} chips, bands "
        f"{written['ExtractBands']}, classes {', '.join(c['Name'] for c in written['Classes'])})",
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
            [
                f"Function     {info['inference_function']} "
                + (
                    "(Esri's standard wrapper: recognised, not run)"
                    if runtime.get("backbone")
                    else "(Esri Python inference function)"
                )
            ]
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
        *_arcgis_learn_lines(info),
    ]
    norm = info["normalisation"]
    if norm["kind"] == "ImageNet":
        lines.append("Normalise    ImageNet mean/std on 0-255 (no NormalizationStats)")
    elif norm["kind"] == "NormalizationStats":
        lines.append(f"Normalise    NormalizationStats: {norm['formula']}")
    else:
        lines.append(f"Normalise    {norm['kind']}: {norm['formula']}")
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


def _arcgis_learn_lines(info: dict[str, Any]) -> list[str]:
    """What an arcgis.learn FeatureClassifier package is, and that its weights run converted, its wrapper not at all."""
    runtime = info["runtime"]
    lines = []
    if runtime.get("backbone"):
        lines += [
            f"Network      {runtime['backbone']} (fastai cnn_learner, {runtime['dialect']} arcgis.learn dialect; "
            "Esri's wrapper is not run)",
            f"Weights      {runtime['weights']}, converted to ONNX {runtime['converted']}",
        ]
    if info.get("multi_label"):
        lines.append(
            "Labels       several per feature (MultiLabeled_Tiles): the names whose probability reaches "
            "score_threshold, joined by ';'; Confidence lists every class's probability"
        )
    return lines
