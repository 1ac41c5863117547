"""The bundled sample: a synthetic post-storm orthophoto, its house footprints and a small roof-damage model.

It lets a user (and the test suite) run the whole tool offline in seconds, without a licence for real
imagery or an ArcGIS-trained model. ``scripts/make_sample.py`` regenerates every file from fixed seeds.
"""

from __future__ import annotations

from pathlib import Path

#: Folder holding the bundled files (installed as package data).
DATA_DIR = Path(__file__).parent / "data"
#: 3-band uint8 GeoTIFF, EPSG:32633, 0.25 m pixels, tiled and JPEG/YCbCr compressed like a real orthophoto.
IMAGE = "orthophoto.tif"
#: GeoPackage, layer "houses": footprints with ``house_id``, ``Truth`` and ``roof_material``.
FEATURES = "houses.gpkg"
#: Esri deep learning package (EMD + ONNX) that labels each footprint "Intact" or "Damaged".
MODEL = "roof-damage.dlpk"

__all__ = ["DATA_DIR", "FEATURES", "IMAGE", "MODEL"]
