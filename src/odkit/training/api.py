"""`odkit.train(...)`: the Python entry point behind `odkit train` (model_main_tf2.py training mode)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from odkit.errors import OdkitError
from odkit.training.trainer import LoaderFn, ModelFn, Trainer, TrainOptions, TrainResult


def load_config(
    pipeline_config_path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    config_overrides: Sequence[str] = (),
) -> Any:
    """pipeline.config (+ --override K=V / --config_override TEXT) -> TrainEvalPipelineConfig."""
    try:
        from odkit.config import load
    except ImportError as exc:
        raise OdkitError(f"the config loader is not available in this odkit build ({exc})") from None
    return load(str(pipeline_config_path), overrides=tuple(overrides), config_overrides=tuple(config_overrides))


def check_supported(config: Any, allow_unsupported: bool) -> None:
    """Refuse configs that set fields odkit does not honour (odkit.config_check.require_supported)."""
    from odkit.config_check import require_supported

    require_supported(config, allow_unsupported=allow_unsupported)


def train(
    pipeline_config_path: str | os.PathLike[str] | None = None,
    model_dir: str | os.PathLike[str] | None = None,
    *,
    config: Any = None,
    overrides: Sequence[str] = (),
    config_overrides: Sequence[str] = (),
    allow_unsupported: bool = False,
    num_train_steps: int | None = None,
    checkpoint_every_n: int = 1000,
    seed: int = 0,
    precision: str = "auto",
    compile: bool = False,
    device: str | None = None,
    eval_every_n: int = 0,
    num_workers: int | None = None,
    log_every_n: int = 10,
    keep_checkpoints: int = 7,
    deterministic: bool = False,
    allow_download: bool = False,
    verbose: bool = True,
    model_fn: ModelFn | None = None,
    loader_fn: LoaderFn | None = None,
) -> TrainResult:
    """Train (or resume) a model; checkpoints, pipeline.config and TensorBoard events go to ``model_dir``.

    Give either ``pipeline_config_path`` (plus optional overrides) or an already loaded ``config``
    (a TrainEvalPipelineConfig). ``model_fn(model_config, is_training)`` and ``loader_fn`` (the
    signature of odkit.inputs.build_input_loader) replace the builders, e.g. in tests.
    Running the same call again resumes from the latest checkpoint in ``model_dir``.
    """
    if model_dir is None:
        raise OdkitError("model_dir is required", where="--model_dir")
    if config is None:
        if pipeline_config_path is None:
            raise OdkitError("give pipeline_config_path or config", where="--pipeline_config_path")
        config = load_config(pipeline_config_path, overrides, config_overrides)
    elif overrides or config_overrides:
        raise OdkitError("overrides apply to pipeline_config_path, not to an already loaded config")
    check_supported(config, allow_unsupported)
    options = TrainOptions(
        model_dir=Path(model_dir),
        num_train_steps=num_train_steps,
        checkpoint_every_n=checkpoint_every_n,
        seed=seed,
        precision=precision,
        compile=compile,
        device=device,
        eval_every_n=eval_every_n,
        num_workers=num_workers,
        log_every_n=log_every_n,
        keep_checkpoints=keep_checkpoints,
        deterministic=deterministic,
        allow_download=allow_download,
        verbose=verbose,
    )
    return Trainer(config, options, model_fn=model_fn, loader_fn=loader_fn).run()
