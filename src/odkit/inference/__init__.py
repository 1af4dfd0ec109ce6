"""Laptop inference on exported models: onnxruntime (no torch needed) or TorchScript.

Nothing in this package imports torch at module level; ``odkit predict`` and ``odkit.Detector`` run
with only onnxruntime, numpy, Pillow and protobuf installed.
"""
