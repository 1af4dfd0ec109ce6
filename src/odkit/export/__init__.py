"""Export a trained model to ONNX / TorchScript (the TF OD API's exporter_main_v2.py).

``odkit.export.exporter.export_model`` exports an already built model (and compares the exported graphs
with it: compare.py); exporting from a pipeline.config + checkpoint is odkit.workflows.export.
"""
