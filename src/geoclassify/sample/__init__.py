"""The bundled sample: a synthetic post-storm orthophoto, its house footprints and a small roof-damage model.

It lets a user (and the test suite) run the whole tool offline in seconds, without a licence for real
imagery or an ArcGIS-trained model. ``scripts/make_sample.py`` regenerates every file from fixed seeds.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

from ..errors import OutputError, OutputExistsError

#: Folder holding the bundled files (installed as package data).
DATA_DIR = Path(__file__).parent / "data"
#: 3-band uint8 GeoTIFF, EPSG:32633, 0.25 m pixels, tiled and JPEG/YCbCr compressed like a real orthophoto.
IMAGE = "orthophoto.tif"
#: GeoPackage, layer "houses": footprints with ``house_id``, ``Truth`` and ``roof_material``.
FEATURES = "houses.gpkg"
#: Esri deep learning package (EMD + ONNX) that labels each footprint "Intact" or "Damaged".
MODEL = "roof-damage.dlpk"

__all__ = ["DATA_DIR", "FEATURES", "IMAGE", "MODEL", "copy_sample"]


def copy_sample(folder: str | os.PathLike[str], overwrite: bool = False) -> dict[str, Path]:
    """Copy the sample's files into ``folder``; returns them by role (image, features, model).

    A file of the same name that differs is the user's (or an edited copy) and is kept unless ``overwrite``;
    one that is already the sample's is left as it is, so running the copy twice is harmless.
    """
    target = Path(folder)
    sources = {"image": DATA_DIR / IMAGE, "features": DATA_DIR / FEATURES, "model": DATA_DIR / MODEL}
    copies = {role: target / path.name for role, path in sources.items()}
    if target.exists() and not target.is_dir():
        raise OutputError(f"{os.fspath(target)!r} is a file; give a folder for the sample")
    clashes = [
        copies[role].name
        for role, path in sources.items()
        if copies[role].exists() and not filecmp.cmp(path, copies[role], shallow=False)
    ]
    if clashes and not overwrite:
        raise OutputExistsError(
            f"{os.fspath(target)!r} already holds {', '.join(clashes)}, which differ from the sample's; "
            "choose another folder, or pass «overwrite» to replace them"
        )
    try:
        target.mkdir(parents=True, exist_ok=True)
        for role, path in sources.items():
            partial = copies[role].with_name(f".{copies[role].name}.partial")
            shutil.copyfile(path, partial)
            os.replace(partial, copies[role])
    except OSError as exc:
        raise OutputError(f"cannot copy the sample into {os.fspath(target)!r}: {exc.strerror or exc}") from None
    return copies
