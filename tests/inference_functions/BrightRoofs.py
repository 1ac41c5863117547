"""An Esri-style wrapper-form object classifier (as ArcGIS's ObjectClassifier.py), written for the tests.

It labels a chip "Bright" when the mean of band 0 over valid pixels exceeds threshold * 255, else "Dark", and
checks that the host gives it chips as getConfiguration asked (ty x tx, its own bands).
"""

import json


class BrightRoofs:
    def __init__(self):
        self.name = "Object classifier"
        self.description = "Labels roofs by brightness"

    def initialize(self, **kwargs):
        if "model" not in kwargs:
            return
        with open(kwargs["model"]) as handle:
            self.emd = json.load(handle)
        self.device = kwargs.get("device")

    def getParameterInfo(self):
        return [
            {"name": "rasters", "dataType": "rasters", "required": True, "displayName": "Rasters"},
            {"name": "model", "dataType": "string", "required": True, "displayName": "EMD"},
            {"name": "device", "dataType": "numeric", "required": False, "displayName": "Device ID"},
            {
                "name": "threshold",
                "dataType": "numeric",
                "required": False,
                "value": 0.5,
                "displayName": "Brightness threshold",
                "description": "share of 255 above which a roof is bright",
            },
            {
                "name": "bright_label",
                "dataType": "string",
                "required": False,
                "value": "Bright",
                "displayName": "Label for bright roofs",
            },
        ]

    def getConfiguration(self, **scalars):
        self.threshold = float(scalars.get("threshold", 0.5))
        self.bright_label = str(scalars.get("bright_label", "Bright"))
        return {
            "tx": 24,
            "ty": 24,
            "extractBands": (0, 2),
            "CropSizeFixed": 1,
            "BlackenAroundFeature": 0,
            "batch_size": 5,
            "inheritProperties": 2 | 4 | 8,
            "inputMask": True,
        }

    def vectorize(self, **pixelBlocks):
        pixels, masks = pixelBlocks["rasters_pixels"], pixelBlocks["rasters_mask"]
        features = []
        for i, (chip, mask) in enumerate(zip(pixels, masks)):
            assert chip.shape == (2, 24, 24), chip.shape
            valid = mask[0] > 0
            mean = chip[0][valid].mean() if valid.any() else 0.0
            label = self.bright_label if mean > self.threshold * 255 else "Dark"
            score = min(1.0, abs(mean / 255 - self.threshold) + 0.5)
            features.append(
                {
                    "attributes": {"OID": i + 1, "Confidence": str(score), "Label": label, "Classname": label},
                    "geometry": {"rings": [[[0, 0], [0, 23], [23, 23], [23, 0], [0, 0]]]},
                }
            )
        feature_set = {
            "displayFieldName": "",
            "geometryType": "esriGeometryPolygon",
            "features": features,
            "fields": [
                {"name": "FID", "type": "esriFieldTypeOID"},
                {"name": "Class", "type": "esriFieldTypeString"},
                {"name": "Confidence", "type": "esriFieldTypeDouble"},
                {"name": "Label", "type": "esriFieldTypeString"},
            ],
        }
        return {"output_vectors": json.dumps(feature_set)}
