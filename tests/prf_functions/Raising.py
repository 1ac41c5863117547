"""An Esri-style wrapper whose vectorize fails on a chip holding a saturated pixel.

Importing it leaves a marker file beside it, so a test can tell whether the package's code ever ran.
"""

import json

open(__file__ + ".imported", "w").close()


def check_pixels(chip):
    brightest = chip.max()
    if brightest >= 255:
        raise ValueError(f"saturated pixel ({brightest:.0f}) in the chip")


class Raising:
    def initialize(self, **kwargs):
        self.model = kwargs["model"]

    def getParameterInfo(self):
        return [
            {"name": "rasters", "dataType": "rasters", "required": True},
            {"name": "model", "dataType": "string", "required": True},
            {"name": "device", "dataType": "numeric", "required": False},
            {"name": "batch_size", "dataType": "numeric", "value": 2},
        ]

    def getConfiguration(self, **scalars):
        return {"tx": 16, "ty": 16, "extractBands": (0,), "batch_size": scalars["batch_size"]}

    def vectorize(self, **pixelBlocks):
        attributes = []
        for i, chip in enumerate(pixelBlocks["rasters_pixels"]):
            check_pixels(chip)
            attributes.append({"OID": i + 1, "Confidence": "0.5", "Label": "Intact"})
        return {"output_vectors": json.dumps({"features": [{"attributes": a} for a in attributes]})}
