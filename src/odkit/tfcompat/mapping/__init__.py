"""Name mappings from TF OD API Keras models (object-based checkpoints) to odkit modules.

```python
from odkit.tfcompat import open_tf_checkpoint
from odkit.tfcompat.mapping import map_tf_variables
plan = map_tf_variables(model, model_config, open_tf_checkpoint(path))
plan.maps           # [TensorMap(odkit_name, tf_name, transform)], every shape checked
plan.unmatched_tf   # TF model variables nothing maps to
plan.unfilled       # odkit parameters/buffers nothing fills (num_batches_tracked excepted)
plan.mismatched     # "odkit <- tf: shapes" pairs left out because the shapes differ
plan.load_into(model, ckpt)   # copy the mapped tensors (strict: refuses a partial plan)
```

One module per family, each with ``tf_maps(model, model_config, tf_names) -> [(odkit_name, tf_name,
transform)]`` over full TF object paths (``model/_feature_extractor/...``): ``ssd.py`` (MobileNet v1/v2,
FPN(-lite), ResNet v1 FPN; weight-shared and convolutional box predictors), ``efficientdet.py``,
``faster_rcnn.py``, ``center_net.py``; shared backbones in ``backbones.py``; array layouts in ``transforms.py``.
"""

from __future__ import annotations

import importlib

from odkit.errors import UnsupportedError
from odkit.tfcompat.mapping.plan import MappingPlan, TensorMap, Transform, build_plan

__all__ = ["MappingPlan", "TensorMap", "Transform", "build_plan", "map_tf_variables", "family_of"]


def family_of(model_config) -> str:
    """'ssd', 'efficientdet', 'faster_rcnn' or 'center_net' for a `model {}` config."""
    kind = model_config.WhichOneof("model")
    if kind == "ssd":
        return "efficientdet" if "efficientnet" in model_config.ssd.feature_extractor.type else "ssd"
    if kind == "faster_rcnn":
        return "faster_rcnn"
    if kind == "center_net":
        return "center_net"
    raise UnsupportedError(f"no TF checkpoint mapping for model type {kind or '(empty)'}", where="model")


def map_tf_variables(model, model_config, ckpt) -> MappingPlan:
    """Plan how the TF checkpoint ``ckpt`` (an open :class:`odkit.tfcompat.TFCheckpoint`) fills ``model``
    (an odkit DetectionModel built from ``model_config``, the pipeline's ``model {}`` block)."""
    family = family_of(model_config)
    try:
        module = importlib.import_module(f"odkit.tfcompat.mapping.{family}")
    except ModuleNotFoundError as e:
        if e.name != f"odkit.tfcompat.mapping.{family}":
            raise
        raise UnsupportedError(f"no TF checkpoint mapping for {family} models yet", where="model") from None
    variables = ckpt.variables()
    triples = module.tf_maps(model, model_config, set(variables))
    return build_plan(model, variables, triples)
