"""TensorFlow checkpoints without TensorFlow: a TensorBundle reader and name mappings to odkit models.

A loader layer beside :mod:`odkit.checkpoints` (imports core/models/builders/protos only)::

    from odkit.tfcompat import open_tf_checkpoint
    ckpt = open_tf_checkpoint("zoo/checkpoint/ckpt-0")   # or the folder, or a SavedModel folder
    for name, var in ckpt.variables().items():
        array = ckpt.read(name)                            # CRC32C verified

The name mappings (TF OD API Keras object paths -> odkit state_dict names) are in
:mod:`odkit.tfcompat.mapping` (``map_tf_variables``).
"""

from odkit.tfcompat.reader import (
    TFCheckpoint,
    TFCheckpointError,
    TFVariable,
    open_tf_checkpoint,
    resolve_tf_prefix,
)

__all__ = ["TFCheckpoint", "TFCheckpointError", "TFVariable", "open_tf_checkpoint", "resolve_tf_prefix"]
