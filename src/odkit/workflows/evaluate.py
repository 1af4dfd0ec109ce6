"""Evaluate one checkpoint (`odkit eval`, model_main_tf2.py --checkpoint_dir): build the model from the config,
load the checkpoint's weights and the eval input, run odkit.evaluation.evaluator.evaluate_model, write
model_dir/eval/ (metrics JSON, TensorBoard, pictures).

    metrics = evaluate_checkpoint(config, "model_dir/ckpt-1000", "model_dir")   # writes model_dir/eval/
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from odkit.builders.model_builder import build_model
from odkit.checkpoints import load_weights
from odkit.data.label_map import LabelMap, load_label_map
from odkit.devices import resolve_device
from odkit.errors import ConfigError
from odkit.evaluation.evaluator import category_names, evaluate_model
from odkit.evaluation.outputs import write_eval_outputs
from odkit.evaluation.settings import eval_settings
from odkit.inputs.builder import build_input_loader
from odkit.runtime import apply_thread_plan, plan_threads

log = logging.getLogger(__name__)


def evaluate_checkpoint(
    config: Any,
    ckpt_path: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    *,
    device: str | None = None,
    use_ema: bool | None = None,
    max_examples: int | None = None,
    write_outputs: bool = True,
) -> dict[str, float]:
    """Evaluate one checkpoint on eval_input_reader[0]; write model_dir/eval/ outputs; return metrics."""
    settings = eval_settings(config.eval_config)
    if not len(config.eval_input_reader):
        raise ConfigError("the pipeline config has no eval_input_reader", hint="add eval_input_reader { ... }")
    reader = config.eval_input_reader[0]
    dev = resolve_device(device)
    model = build_model(config.model, is_training=False)
    ema = settings.use_moving_averages if use_ema is None else use_ema
    ckpt = load_weights(model, ckpt_path, use_ema=ema)
    model.to(dev)
    if reader.label_map_path:
        label_map: Any = load_label_map(reader.label_map_path)
    else:
        n = int(getattr(model, "num_classes", 0))
        label_map = LabelMap.from_names([str(i) for i in range(1, n + 1)])
    retain = settings.retain_original_images and settings.num_visualizations > 0
    threads = plan_threads("eval", device=dev.type, max_workers=int(reader.num_readers or 1))
    apply_thread_plan(threads)
    loader = build_input_loader(reader, config.model, None, is_training=False,
                                batch_size=settings.batch_size, retain_original_images=retain,
                                num_workers=threads.workers)
    if max_examples is None and settings.num_examples > 0:
        max_examples = settings.num_examples
    log.info("loaded %s weights of step %d; running on %s (%s)", "EMA" if ema else "model", ckpt.step, dev,
             threads.describe())
    metrics, extras = evaluate_model(model, loader, settings, label_map, device=dev, max_examples=max_examples)
    if write_outputs:
        write_eval_outputs(Path(model_dir) / "eval", ckpt.step, metrics, extras, settings,
                           category_names(label_map))
    return metrics
