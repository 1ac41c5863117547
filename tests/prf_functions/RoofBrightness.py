"""An Esri-style wrapper-form object classifier, shaped like ArcGIS's ArcGISObjectClassifier.py (numpy only).

A roof is bright when the mean of band 0 over the chip's valid pixels exceeds ``threshold * 255``. The function
asks for 24 x 24 chips of bands (0, 2) in getConfiguration, whatever the EMD says, and checks that it gets them.
"""

import json

import numpy as np

features = {
    "displayFieldName": "",
    "fieldAliases": {"FID": "FID", "Class": "Class", "Confidence": "Confidence"},
    "geometryType": "esriGeometryPolygon",
    "fields": [
        {"name": "FID", "type": "esriFieldTypeOID", "alias": "FID"},
        {"name": "Class", "type": "esriFieldTypeString", "alias": "Class"},
        {"name": "Confidence", "type": "esriFieldTypeDouble", "alias": "Confidence"},
    ],
    "features": [],
}

fields = {
    "fields": [
        {"name": "OID", "type": "esriFieldTypeOID", "alias": "OID"},
        {"name": "Class", "type": "esriFieldTypeString", "alias": "Class"},
        {"name": "Confidence", "type": "esriFieldTypeDouble", "alias": "Confidence"},
        {"name": "Shape", "type": "esriFieldTypeGeometry", "alias": "Shape"},
    ]
}

CHIP = 24
BANDS = (0, 2)


class RoofBrightness:
    def __init__(self):
        self.name = "Object classifier"
        self.description = "Labels roofs bright or dark from band 0"

    def initialize(self, **kwargs):
        if "model" not in kwargs:
            return
        model = kwargs["model"]
        try:
            with open(model) as f:
                self.json_info = json.load(f)
        except FileNotFoundError:
            self.json_info = json.loads(model)
        self.device = kwargs.get("device", -1)

    def getParameterInfo(self):
        parameters = [
            {"name": "rasters", "dataType": "rasters", "required": True, "displayName": "Rasters", "value": None},
            {"name": "model", "dataType": "string", "required": True, "displayName": "Input Model Definition (EMD)"},
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
        if "BatchSize" not in self.json_info:
            parameters.append(
                {
                    "name": "batch_size",
                    "dataType": "numeric",
                    "required": False,
                    "value": 4,
                    "displayName": "Batch Size",
                }
            )
        return parameters

    def getConfiguration(self, **scalars):
        # ArcGIS hands over numbers and booleans parsed, and 'string' parameters as text.
        if not isinstance(scalars["threshold"], float) or not isinstance(scalars["bright_label"], str):
            raise TypeError(f"unexpected argument types: {scalars!r}")
        self.threshold = scalars["threshold"]
        self.bright_label = scalars["bright_label"]
        self.batch_size = int(scalars.get("batch_size", 4))
        return {
            "extractBands": BANDS,
            "CropSizeFixed": 1,
            "BlackenAroundFeature": 0,
            "tx": CHIP,
            "ty": CHIP,
            "batch_size": self.batch_size,
        }

    def getFields(self):
        return json.dumps(fields)

    def getGeometryType(self):
        return 4

    def vectorize(self, **pixelBlocks):
        pixels = pixelBlocks["rasters_pixels"]
        masks = pixelBlocks["rasters_mask"]
        if len(pixels) > self.batch_size:
            raise ValueError(f"got {len(pixels)} chips, more than batch_size {self.batch_size}")
        features["features"] = []
        for i, (chip, mask) in enumerate(zip(pixels, masks, strict=True)):
            if chip.shape != (len(BANDS), CHIP, CHIP) or mask.shape != chip.shape or mask.dtype != np.uint8:
                raise ValueError(f"chip {chip.shape}, mask {mask.shape} {mask.dtype}: not what getConfiguration asked")
            valid = mask[0] > 0
            if np.any(chip[1][valid] != 7):  # raster band 2 is 7 everywhere: proves which bands were extracted
                raise ValueError("the second chip band is not raster band 2")
            mean = float(chip[0][valid].astype("float64").mean()) if valid.any() else 0.0
            label = self.bright_label if mean > self.threshold * 255 else "Dark"
            features["features"].append(
                {
                    "attributes": {
                        "OID": i + 1,
                        "Confidence": str(round(mean / 255, 6)),
                        "Label": label,
                        "Classname": label,
                    },
                    "geometry": {"rings": [[[0, 0], [0, CHIP - 1], [CHIP - 1, CHIP - 1], [CHIP - 1, 0]]]},
                }
            )
        return {"output_vectors": json.dumps(features)}
