"""An Esri-style wrapper whose vectorize fails on bright chips, for the error report."""

import json

MARKER = __file__ + ".imported"
open(MARKER, "w").close()  # proves whether the package's code ran


class Explodes:
    def initialize(self, **kwargs):
        pass

    def getParameterInfo(self):
        return [{"name": "rasters", "dataType": "rasters"}, {"name": "model", "dataType": "string"}]

    def getConfiguration(self, **scalars):
        return {"tx": 16, "ty": 16, "extractBands": (0, 1, 2), "batch_size": 4}

    def vectorize(self, **pixelBlocks):
        labels = []
        for chip in pixelBlocks["rasters_pixels"]:
            brightest = chip.max()
            if brightest > 250:
                raise ValueError(f"cannot handle a pixel of {brightest:.0f}")
            labels.append("Dark")
        features = [{"attributes": {"Confidence": "0.5", "Label": label}} for label in labels]
        return {"output_vectors": json.dumps({"features": features})}
