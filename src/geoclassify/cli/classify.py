"""``geoclassify classify``: its options, each filling one setting of the RunRequest it runs.

The run core (pandas, geopandas, rasterio, the model runtimes) is imported when the command runs, not when the
command line is built, so ``geoclassify --help`` and the other commands start fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from ..fields import DEFAULT_LABEL_FIELD
from ..hooks import RunHooks
from ..model.arguments import split_assignments
from ..progress import TerminalProgress
from .group import cli

if TYPE_CHECKING:
    from ..request import RunRequest


def classify_request(options: dict[str, Any]) -> RunRequest:
    """The request that ``geoclassify classify`` makes of its options (each option fills one setting)."""
    from ..request import RunRequest

    return RunRequest.from_keywords(
        **{**options, "arguments": split_assignments(options["arguments"]), "extent": options["extent"] or None}
    )


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
@click.option(
    "--out-layer",
    metavar="NAME",
    help="Layer name in a GeoPackage output (default: the file name); added to an existing GeoPackage, whose other "
    "layers are kept.",
)
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
@click.option(
    "--processor-type",
    default="CPU",
    show_default=True,
    metavar="CPU|GPU",
    help="Run the model on the CPU or on an NVIDIA GPU through CUDA (ONNX models need geoclassify[gpu], TorchScript a "
    "CUDA build of PyTorch), in every worker (Esri's Processor Type).",
)
@click.option("--gpu-id", type=int, metavar="N", help="Which GPU for --processor-type GPU: CUDA's number, default 0.")
@click.option("--trust-code", is_flag=True, help="Allow a package's Python inference function to run (it is code).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run writing the same --out.")
@click.option(
    "--overwrite", is_flag=True, help="Replace the output if it exists (in a GeoPackage: only the --out-layer)."
)
@click.option(
    "--where",
    metavar="SQL",
    help="Classify only the features this SQL WHERE clause selects, as OGR filters (e.g. \"type = 'roof'\").",
)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="K",
    help="Also write the 2nd to Kth most probable classes and their confidences (ClassLabel_2, Confidence_2, ...).",
)
@click.option(
    "--probabilities", is_flag=True, help="Write every class's probability, one field per class (Prob_<class>)."
)
@click.option(
    "--min-coverage",
    type=click.FloatRange(0.0, 1.0),
    metavar="F",
    help="Leave unclassified the features whose chip holds less valid raster than F (0 to 1), with the reason in "
    "the Unclassified field.",
)
@click.option(
    "--export-chips",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Write every chip as the model receives it (after blackening, before normalisation) to DIR, as PNG (8 or "
    "16 bits, 1, 3 or 4 bands) or GeoTIFF, named by feature (feature_12.png) or image.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Report the features, images, chip size in pixels and on the ground and the warnings; classify nothing.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def classify(quiet: bool, **options: Any) -> None:
    """Label every feature (or every image) with the class the model sees in its image chip."""
    from ..runs import RunContext, run

    bar = TerminalProgress() if not quiet and sys.stderr.isatty() else None
    try:
        summary = run(classify_request(options), RunContext(hooks=RunHooks(progress=bar)))
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"geoclassify: {summary.line()}", err=True)
