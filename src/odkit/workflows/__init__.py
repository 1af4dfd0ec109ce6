"""Orchestration above the libraries: each workflow reads a pipeline config and wires the library packages
(builders, inputs, checkpoints, training, evaluation, export) together.

    train.py            odkit.train / `odkit train` (model_main_tf2.py training mode); eval every N steps
    evaluate.py         evaluate one checkpoint (`odkit eval`, model_main_tf2.py --checkpoint_dir)
    continuous_eval.py  evaluate each new checkpoint in a folder as it appears
    export.py           export from a pipeline.config + checkpoint (`odkit export`, exporter_main_v2.py)
    preview.py          `odkit records preview`: the input pipeline's images with their boxes
    demo.py             `odkit demo`: the whole workflow, end to end, through the public commands

Nothing below this package imports it (tests/test_import_layers.py); only ``odkit.cli`` and the ``odkit``
facade sit above it.
"""
