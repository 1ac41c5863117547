"""A helper module that RoofChild.py imports from beside it in the package."""

import numpy as np


def footprint_mean(chip, mask):
    """Mean of band 0 over the valid pixels inside the footprint (blackened pixels outside it are 0)."""
    inside = (chip[0] > 0) & (mask[0] > 0)
    return float(chip[0][inside].astype(np.float64).mean()) if inside.any() else 0.0
