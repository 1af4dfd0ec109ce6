"""Config support rules for the common/structural area: options no area implements, refused with a reason.

Structural containers (``model``, ``train_config``, ...) need no rule: check() recurses into any set
message without one. Put rules for fields an area implements in that area's module.

Format (see odkit.config.support): ``RULES: dict[str, Rule]`` keyed ``"<ProtoMessageName>.<field_name>"``
(nested messages ``"Outer.Inner.field"``), values from odkit.config.support.rules:

    "TrainConfig.batch_size": Honoured(where="odkit.training.trainer"),
    "PostProcessing.score_converter": Values(allowed={"SIGMOID", "SOFTMAX"}, where="odkit.builders.post_processing"),
    "TrainConfig.sync_replicas": Refused(reason="TF1 parameter-server option; odkit trains synchronously"),

Add a rule only for what the code really honours; `odkit config check` reports every other set field.
Keep keys sorted; `tests/test_config_support.py` checks that each key names a real field.
"""

from __future__ import annotations

from odkit.config.support.rules import Honoured, Refused, Rule, Values

__all__ = ["RULES", "Honoured", "Refused", "Values"]

RULES: dict[str, Rule] = {
    "DetectionModel.experimental_model": Refused(
        reason="experimental meta-architectures are TF OD API plug-ins; use ssd or faster_rcnn"
    ),
    "InputReader.external_input_reader": Refused(
        reason="external (custom / Google-internal) input readers cannot be read; use tf_record_input_reader"
    ),
    "TrainEvalPipelineConfig.graph_rewriter": Refused(
        reason="TF1 quantization-aware graph rewriting is not implemented; remove graph_rewriter"
    ),
}
