"""Export a trained model to ONNX / TorchScript (the TF OD API's exporter_main_v2.py).

``odkit.export.exporter.export_from_config`` is the entry point used by ``odkit export``;
``odkit.export.exporter.export_model`` exports an already built model.
"""
