"""The training engine behind `odkit train` (TF OD API model_main_tf2.py semantics).

The loop: odkit.training.trainer.Trainer; the entry point that wires it (`odkit.train`) is odkit.workflows.train.
"""
