"""Config support rules for the SSD area (Ssd, SsdFeatureExtractor, anchors, box coders, matchers, box predictors, losses, post-processing).

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

RULES: dict[str, Rule] = {}
