"""An Esri-style child (ChildObjectDetector), the part ArcGIS's wrapper delegates to, importing a helper module
shipped beside it in the package, as Living Atlas models do."""

import json

from _roof_helpers import footprint_mean


class ChildObjectDetector:
    def initialize(self, model, model_as_file):
        if model_as_file:
            with open(model) as f:
                self.json_info = json.load(f)
        else:
            self.json_info = json.loads(model)

    def getParameterInfo(self, required_parameters):
        required_parameters.append(
            {
                "name": "cutoff",
                "dataType": "numeric",
                "value": 100,
                "required": False,
                "displayName": "Mean of band 0 above which a roof is damaged",
            }
        )
        return required_parameters

    def getConfiguration(self, **scalars):
        self.cutoff = scalars.get("cutoff", 100)
        self.batch_size = int(scalars.get("batch_size", 1))
        return {
            "extractBands": tuple(self.json_info["ExtractBands"]),
            "CropSizeFixed": int(self.json_info["CropSizeFixed"]),
            "BlackenAroundFeature": int(self.json_info["BlackenAroundFeature"]),
            "tx": self.json_info["ImageWidth"],
            "ty": self.json_info["ImageHeight"],
            "batch_size": self.batch_size,
        }

    def vectorize(self, **pixelBlocks):
        polygons, scores, labels = [], [], []
        for chip, mask in zip(pixelBlocks["rasters_pixels"], pixelBlocks["rasters_mask"], strict=True):
            value = footprint_mean(chip, mask)
            h, w = chip.shape[1:]
            polygons.append([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
            scores.append(value / 255)
            labels.append("Damaged" if value > self.cutoff else "Intact")
        return polygons, scores, labels
