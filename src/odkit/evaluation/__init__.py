"""Evaluation: COCO and PASCAL VOC box metrics, the `odkit eval` loop, pictures and PR curves.

Light to import: the metric modules need numpy only; torch is imported by evaluator.py.
"""
