"""The ``geoclassify`` command group, which every command module adds itself to."""

from __future__ import annotations

import logging
import sys

import click

from .._version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="geoclassify")
@click.option("--verbose", "-v", is_flag=True, help="Say what the run does as it goes (on stderr).")
def cli(verbose: bool) -> None:
    """Classify objects in imagery with deep learning (Esri .dlpk/.emd and ONNX models)."""
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("geoclassify: %(message)s"))
        logger = logging.getLogger("geoclassify")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
