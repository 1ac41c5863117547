"""A helper module, imported by RoofChild.py from beside it in the package (as ArcGIS allows)."""


def score(chip, mask):
    """Mean of the non-zero (inside the footprint) pixels of band 0."""
    inside = chip[0] > 0
    return float(chip[0][inside].mean()) if inside.any() else 0.0
