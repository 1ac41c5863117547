"""An Esri-style child (ChildObjectDetector) that imports a helper module shipped beside it in the package."""

from _roof_helpers import score


class ChildObjectDetector:
    def initialize(self, model, model_as_file):
        self.model_as_file = model_as_file

    def getParameterInfo(self, required_parameters):
        required_parameters.append(
            {
                "name": "cutoff",
                "dataType": "numeric",
                "value": 100,
                "displayName": "Mean band value above which the roof is bright",
            }
        )
        return required_parameters

    def getConfiguration(self, **scalars):
        self.cutoff = float(scalars.get("cutoff", 100))
        self.batch_size = int(scalars.get("batch_size", 4))
        return {
            "extractBands": (0, 1, 2),
            "tx": 16,
            "ty": 16,
            "CropSizeFixed": 1,
            "BlackenAroundFeature": 1,
            "batch_size": self.batch_size,
        }

    def vectorize(self, **pixelBlocks):
        polygons, scores, labels = [], [], []
        for chip, mask in zip(pixelBlocks["rasters_pixels"], pixelBlocks["rasters_mask"]):
            value = score(chip, mask)
            labels.append("Bright" if value > self.cutoff else "Dark")
            scores.append(0.9)
            polygons.append([[0, 0], [15, 0], [15, 15], [0, 15]])
        return polygons, scores, labels
