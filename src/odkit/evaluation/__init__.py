"""Evaluation: COCO and PASCAL VOC box metrics, the eval loop over a built model, pictures and PR curves
(evaluating a checkpoint from a config is odkit.workflows.evaluate).

Light to import: the metric modules need numpy only; torch is imported by evaluator.py.
"""
