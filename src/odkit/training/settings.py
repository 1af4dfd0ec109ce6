"""``train_config`` -> :class:`TrainSettings`: the one place the training loop reads the train config.

The trainer takes its values from here (the optimizer from odkit.training.optimizers, the augmentations
and ``max_number_of_boxes`` from odkit.inputs.builder, fine-tuning from :func:`fine_tune_settings`), and
``odkit config check`` calls these functions on a read-tracking view of the config: what they read is
what odkit honours; what they refuse is refused by name (odkit.config.tracking).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from odkit.config.tracking import refuse

FINE_TUNE_TYPES = ("detection", "classification", "full")


@dataclass(frozen=True)
class FineTuneSettings:
    checkpoint: str = ""
    kind: str = "classification"  # fine_tune_checkpoint_type, or from_detection_checkpoint when it is empty
    load_all: bool = False  # load_all_detection_checkpoint_vars (detection only)
    version_v1: bool = False  # fine_tune_checkpoint_version: V1 set explicitly (refused for TF checkpoints)


@dataclass(frozen=True)
class TrainSettings:
    batch_size: int = 32  # global: split over DDP processes
    num_steps: int = 0
    use_moving_average: bool = False
    moving_average_decay: float = 0.9999
    use_bfloat16: bool = False
    add_regularization_loss: bool = True
    gradient_clipping_by_norm: float = 0.0
    update_trainable_variables: tuple[str, ...] = ()
    freeze_variables: tuple[str, ...] = ()
    fine_tune: FineTuneSettings = FineTuneSettings()


def fine_tune_settings(train_config: Any) -> FineTuneSettings:
    tc = train_config
    kind = str(tc.fine_tune_checkpoint_type)
    from_detection = bool(tc.from_detection_checkpoint)  # TF1: chooses the type when it is empty
    if not kind:
        kind = "detection" if from_detection else "classification"
    if kind not in FINE_TUNE_TYPES:
        refuse(tc, "fine_tune_checkpoint_type", f"fine_tune_checkpoint_type {kind!r} is not supported",
               hint="use one of: " + ", ".join(FINE_TUNE_TYPES), fallback="train_config.fine_tune_checkpoint_type")
    v1 = tc.HasField("fine_tune_checkpoint_version") and int(tc.fine_tune_checkpoint_version) == 1  # CheckpointVersion.V1
    return FineTuneSettings(checkpoint=str(tc.fine_tune_checkpoint), kind=kind,
                            load_all=bool(tc.load_all_detection_checkpoint_vars) and kind == "detection",
                            version_v1=v1)


def train_settings(train_config: Any) -> TrainSettings:
    """Read a ``TrainConfig`` message (or a tracked view of one)."""
    tc = train_config
    for name, why in (("bias_grad_multiplier", "gradient multipliers are not implemented"),
                      ("startup_delay_steps", "there is no TF1 asynchronous start-up")):
        if tc.HasField(name) and float(getattr(tc, name)) != 0.0:  # startup_delay_steps defaults to 15 (TF1)
            refuse(tc, name, f"{name} {getattr(tc, name)} is not supported ({why})", hint="remove it",
                   fallback=f"train_config.{name}")
    opt = tc.optimizer
    return TrainSettings(
        batch_size=int(tc.batch_size),
        num_steps=int(tc.num_steps),
        use_moving_average=bool(opt.use_moving_average),
        moving_average_decay=float(opt.moving_average_decay),
        use_bfloat16=bool(tc.use_bfloat16),
        add_regularization_loss=bool(tc.add_regularization_loss),
        gradient_clipping_by_norm=float(tc.gradient_clipping_by_norm),
        update_trainable_variables=tuple(tc.update_trainable_variables),
        freeze_variables=tuple(tc.freeze_variables),
        fine_tune=fine_tune_settings(tc),
    )
