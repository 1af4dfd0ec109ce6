"""Detection models: `base.DetectionModel` (the contract), `ssd.SSDMetaArch`, Faster R-CNN, and their parts
(backbones/, necks/, heads/, hyperparams.py). Built from protos by `odkit.builders.model_builder.build_model`."""
