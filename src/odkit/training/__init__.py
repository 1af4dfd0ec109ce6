"""The training engine behind `odkit train` (TF OD API model_main_tf2.py semantics).

Entry point: `odkit.training.api.train(...)` (also `odkit.train`).
"""
