"""Config support rules for the training area (TrainConfig, Optimizer, learning-rate schedules).

Format (see odkit.config.support): ``RULES: dict[str, Rule]`` keyed ``"<ProtoMessageName>.<field_name>"``
(nested messages ``"Outer.Inner.field"``), values from odkit.config.support.rules:

    "TrainConfig.batch_size": Honoured(where="odkit.training.trainer"),
    "PostProcessing.score_converter": Values(allowed={"SIGMOID", "SOFTMAX"}, where="odkit.builders.post_processing"),
    "TrainConfig.startup_delay_steps": Values(allowed={0.0}, where="odkit.training.trainer"),  # no TF1 async startup delay
    "TrainConfig.sync_replicas": Refused(reason="TF1 parameter-server option; odkit trains synchronously"),

Add a rule only for what the code really honours; `odkit config check` reports every other set field.
Keep keys sorted; `tests/test_config_support.py` checks that each key names a real field.
"""

from __future__ import annotations

from odkit.config.support.rules import Honoured, Refused, Rule, Values

__all__ = ["RULES", "Honoured", "Refused", "Values"]

RULES: dict[str, Rule] = {
    "AdamOptimizer.epsilon": Honoured(where="odkit.training.optimizers"),
    "ConstantLearningRate.learning_rate": Honoured(where="odkit.training.schedules"),
    "CosineDecayLearningRate.hold_base_rate_steps": Honoured(where="odkit.training.schedules"),
    "CosineDecayLearningRate.learning_rate_base": Honoured(where="odkit.training.schedules"),
    "CosineDecayLearningRate.total_steps": Honoured(where="odkit.training.schedules"),
    "CosineDecayLearningRate.warmup_learning_rate": Honoured(where="odkit.training.schedules"),
    "CosineDecayLearningRate.warmup_steps": Honoured(where="odkit.training.schedules"),
    "ExponentialDecayLearningRate.burnin_learning_rate": Honoured(where="odkit.training.schedules"),
    "ExponentialDecayLearningRate.burnin_steps": Honoured(where="odkit.training.schedules"),
    "ExponentialDecayLearningRate.decay_factor": Honoured(where="odkit.training.schedules"),
    "ExponentialDecayLearningRate.decay_steps": Honoured(where="odkit.training.schedules"),
    "ExponentialDecayLearningRate.initial_learning_rate": Honoured(where="odkit.training.schedules"),
    "ExponentialDecayLearningRate.min_learning_rate": Honoured(where="odkit.training.schedules"),
    "ExponentialDecayLearningRate.staircase": Honoured(where="odkit.training.schedules"),
    "ManualStepLearningRate.LearningRateSchedule.learning_rate": Honoured(where="odkit.training.schedules"),
    "ManualStepLearningRate.LearningRateSchedule.step": Honoured(where="odkit.training.schedules"),
    "ManualStepLearningRate.initial_learning_rate": Honoured(where="odkit.training.schedules"),
    "ManualStepLearningRate.warmup": Honoured(where="odkit.training.schedules"),
    "MomentumOptimizer.momentum_optimizer_value": Honoured(where="odkit.training.optimizers"),
    "Optimizer.moving_average_decay": Honoured(where="odkit.training.ema"),
    "Optimizer.use_moving_average": Honoured(where="odkit.training.trainer"),
    "RMSPropOptimizer.decay": Honoured(where="odkit.training.optimizers"),
    "RMSPropOptimizer.epsilon": Honoured(where="odkit.training.optimizers"),
    "RMSPropOptimizer.momentum_optimizer_value": Honoured(where="odkit.training.optimizers"),
    "TrainConfig.add_regularization_loss": Honoured(where="odkit.training.trainer"),
    "TrainConfig.batch_size": Honoured(where="odkit.training.trainer"),  # global batch, split over DDP ranks
    "TrainConfig.bias_grad_multiplier": Values(allowed={0.0}, where="odkit.training.trainer"),
    "TrainConfig.fine_tune_checkpoint": Honoured(where="odkit.training.finetune"),
    "TrainConfig.fine_tune_checkpoint_type": Values(
        allowed={"", "detection", "classification", "full"}, where="odkit.training.finetune"
    ),
    "TrainConfig.fine_tune_checkpoint_version": Honoured(
        where="odkit.training.finetune"
    ),  # TF2 object-based checkpoints are V2; an explicit V1 with a TF checkpoint is refused (as TF2 does);
    # odkit / PyTorch sources have one format of their own, so the field does not apply to them
    "TrainConfig.freeze_variables": Honoured(
        where="odkit.training.finetune"
    ),  # regexes on odkit parameter names
    "TrainConfig.from_detection_checkpoint": Honoured(
        where="odkit.training.finetune"
    ),  # when fine_tune_checkpoint_type is empty
    "TrainConfig.gradient_clipping_by_norm": Honoured(where="odkit.training.trainer"),
    "TrainConfig.load_all_detection_checkpoint_vars": Honoured(
        where="odkit.training.finetune"
    ),  # TF1 meaning: detection loads every tensor whose name and shape match (heads too)
    "TrainConfig.num_steps": Honoured(where="odkit.training.trainer"),
    "TrainConfig.replicas_to_aggregate": Honoured(
        where="odkit.training.distributed"
    ),  # DDP aggregates all replicas
    "TrainConfig.run_fine_tune_checkpoint_dummy_computation": Honoured(
        where="odkit.training.finetune"
    ),  # either value: torch modules own their tensors at construction, no dummy run is needed to build them
    "TrainConfig.startup_delay_steps": Values(
        allowed={0.0}, where="odkit.training.trainer"
    ),  # no TF1 async startup delay
    "TrainConfig.sync_replicas": Honoured(
        where="odkit.training.distributed"
    ),  # DDP training is always synchronous
    "TrainConfig.update_trainable_variables": Honoured(where="odkit.training.finetune"),
    "TrainConfig.use_bfloat16": Honoured(
        where="odkit.training.precision"
    ),  # bf16 autocast with --precision auto
}
