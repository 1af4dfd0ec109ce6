"""`odkit.train(...)`: the Python entry point behind `odkit train` (model_main_tf2.py training mode).

Wires the libraries: the model builder and the input loader go to the training loop
(odkit.training.trainer.Trainer), and, with ``eval_every_n``, each saved checkpoint is evaluated
(odkit.workflows.evaluate) on the main process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from odkit.builders.model_builder import build_model
from odkit.config import load
from odkit.errors import OdkitError
from odkit.inputs.builder import build_input_loader
from odkit.training.trainer import LoaderFn, ModelFn, Trainer, TrainOptions, TrainResult
from odkit.workflows import evaluate as evaluate_workflow
from odkit.workflows.config_check import require_supported


def load_config(
    pipeline_config_path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    config_overrides: Sequence[str] = (),
) -> Any:
    """pipeline.config (+ --override K=V / --config_override TEXT) -> TrainEvalPipelineConfig."""
    return load(str(pipeline_config_path), overrides=tuple(overrides), config_overrides=tuple(config_overrides))


def check_supported(config: Any, allow_unsupported: bool) -> None:
    """Refuse configs that set fields odkit does not honour (odkit.workflows.config_check.require_supported)."""
    require_supported(config, allow_unsupported=allow_unsupported)


def checkpoint_evaluator(config: Any, model_dir: Path, log: Callable[[str], None]) -> Callable[..., None]:
    """``evaluate(ckpt, device)`` for --eval_every_n: evaluate_checkpoint, then one line with the first metrics.
    The evaluator is looked up at call time (tests replace ``odkit.workflows.evaluate.evaluate_checkpoint``)."""

    def evaluate(ckpt: Path, device: Any) -> None:
        metrics = evaluate_workflow.evaluate_checkpoint(config, ckpt, model_dir, device=str(device))
        if isinstance(metrics, dict):
            shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            log("eval " + ckpt.name + ": " + ", ".join(f"{k} {v:.4f}" for k, v in list(shown.items())[:4]))

    return evaluate


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
    trainer = Trainer(config, options, model_fn=model_fn or build_model, loader_fn=loader_fn or build_input_loader)
    if eval_every_n > 0:
        trainer.evaluate_fn = checkpoint_evaluator(config, Path(model_dir), trainer.log)
    return trainer.run()
