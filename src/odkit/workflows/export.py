"""``odkit export`` from a pipeline.config and a checkpoint (the TF OD API's exporter_main_v2.py).

The checkpoint is an odkit one (``D`` or ``D/ckpt-N``) or a TF2 one (a zoo ``checkpoint/`` folder, a ``ckpt-N``
prefix or a ``saved_model/`` folder), whose variables are mapped onto the model by odkit.tfcompat (every model
tensor must be filled, with the same shape)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from safetensors.torch import save_file

from odkit.builders.model_builder import build_model
from odkit.checkpoints import Checkpoint, load_weights, resolve_checkpoint, write_index
from odkit.config import load, to_text
from odkit.errors import ConfigError
from odkit.evaluation.settings import eval_settings
from odkit.export.exporter import (
    DEFAULT_OPSET,
    FORMATS,
    ExportResult,
    check_input_type,
    check_opset,
    export_model,
    parse_formats,
    write_label_map,
)
from odkit.export.resize import export_resizer
from odkit.inputs.builder import resizer_for_model
from odkit.protos import string_int_label_map_pb2
from odkit.tfcompat import open_tf_checkpoint
from odkit.tfcompat.restore import is_tf_checkpoint, read_tf_state_dict
from odkit.version import __version__
from odkit.workflows.config_check import require_supported


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_label_map_classes(path: str, num_classes: int) -> list[dict[str, Any]]:
    """[{"id", "name", "display_name"}] for ids 1..num_classes from a label_map.pbtxt (generic names for gaps)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read label map: {exc}", where=path) from None
    msg = string_int_label_map_pb2.StringIntLabelMap()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        raise ConfigError(f"invalid label map: {exc}", where=path) from None
    by_id = {int(item.id): item for item in msg.item}
    classes = []
    for i in range(1, num_classes + 1):
        item = by_id.get(i)
        name = item.name if item is not None and item.name else f"class_{i}"
        display = item.display_name if item is not None and item.display_name else name
        classes.append({"id": i, "name": name, "display_name": display})
    return classes


def _label_map_path(config: Any) -> str | None:
    readers = list(getattr(config, "eval_input_reader", [])) + [config.train_input_reader]
    for reader in readers:
        if reader.label_map_path:
            return str(reader.label_map_path)
    return None


def _copy_checkpoint(src: Path | None, dest_root: Path, use_ema: bool, step: int,
                     state: Any = None, source: str | None = None) -> None:
    """dest_root/checkpoint/ckpt-N/model.safetensors (the exported weights) + meta.json + index; the weights are
    copied from the odkit checkpoint ``src`` or, for a TF checkpoint, written from ``state``."""
    ckpt_dir = dest_root / "checkpoint" / f"ckpt-{step}"
    ckpt_dir.mkdir(parents=True)
    if src is not None:
        shutil.copyfile(src / ("ema.safetensors" if use_ema else "model.safetensors"), ckpt_dir / "model.safetensors")
    else:
        save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(ckpt_dir / "model.safetensors"),
                  metadata={"format": "pt", "step": str(step)})
    meta = {"step": step, "odkit_version": __version__, "complete": True, "exported_from": source or str(src),
            "use_ema": use_ema}
    (ckpt_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_index(dest_root / "checkpoint", [Checkpoint(step=step, path=ckpt_dir)])


def _tf_step(prefix: Path) -> int:
    """N of a ``ckpt-N`` prefix (0 for other names, e.g. SavedModel ``variables``)."""
    name = prefix.name
    return int(name[5:]) if name.startswith("ckpt-") and name[5:].isdigit() else 0


def export_from_config(
    pipeline_config_path: str,
    trained_checkpoint_dir: str,
    output_directory: str,
    *,
    input_type: str = "image_tensor",
    formats: Sequence[str] = FORMATS,
    opset: int = DEFAULT_OPSET,
    use_ema: bool = False,
    overrides: Sequence[str] = (),
    config_overrides: Sequence[str] = (),
    allow_unsupported: bool = False,
    verify: bool = True,
    log: Callable[[str], None] = _stderr,
) -> ExportResult:
    """Build the model from the config, load the checkpoint weights and write the export folder."""
    check_input_type(input_type)
    formats = parse_formats(formats)
    check_opset(opset)
    config = load(pipeline_config_path, overrides=overrides, config_overrides=config_overrides)
    require_supported(config, allow_unsupported, path=pipeline_config_path)
    arch = config.model.WhichOneof("model")
    if arch is None:
        raise ConfigError("model {} is empty", where=pipeline_config_path)
    tf_state = None
    if is_tf_checkpoint(trained_checkpoint_dir):
        if use_ema:
            raise ConfigError("--use_ema: a TF checkpoint holds no odkit moving-average weights",
                              where=trained_checkpoint_dir, hint="export without --use_ema")
        model = build_model(config.model, is_training=False)
        prefix = open_tf_checkpoint(trained_checkpoint_dir).prefix
        tf_state = read_tf_state_dict(model, config.model, trained_checkpoint_dir,
                                      log=lambda m: log(f"odkit export: {m}"))
        loaded = Checkpoint(step=_tf_step(Path(prefix)), path=Path(prefix))
        log(f"odkit export: {arch} from the TF checkpoint {prefix} (every model tensor mapped)")
    else:
        ckpt = resolve_checkpoint(trained_checkpoint_dir)
        model = build_model(config.model, is_training=False)
        loaded = load_weights(model, ckpt, use_ema=use_ema)
        log(f"odkit export: {arch} from {loaded.path} (step {loaded.step}{', EMA' if use_ema else ''})")
    resizer = export_resizer(resizer_for_model(config.model))

    num_classes = int(model.num_classes)
    lm_path = _label_map_path(config)
    classes = None
    if lm_path and Path(lm_path).is_file():
        classes = read_label_map_classes(lm_path, num_classes)
    elif lm_path:
        log(f"odkit export: warning: label map {lm_path} not found; using generic class names")

    def extra_files(tmp: Path) -> None:
        (tmp / "pipeline.config").write_text(to_text(config))
        if tf_state is None:
            _copy_checkpoint(loaded.path, tmp, use_ema, loaded.step)
        else:
            _copy_checkpoint(None, tmp, False, loaded.step, state=tf_state,
                             source=f"TensorFlow checkpoint {os.path.abspath(loaded.path)}")
        if classes is not None:
            write_label_map(tmp / "label_map.pbtxt", classes)

    info = {
        "architecture": arch,
        "checkpoint": {"path": str(os.path.abspath(loaded.path)), "step": loaded.step, "use_ema": use_ema,
                       "format": "odkit" if tf_state is None else "tensorflow"},
        "label_map_source": lm_path if classes is not None else None,
    }
    edges = eval_settings(config.eval_config).keypoint_edges
    if edges:  # predict draws them
        info["keypoint_edges"] = [list(e) for e in edges]
    return export_model(
        model, resizer, output_directory, input_type=input_type, formats=formats, opset=opset, classes=classes,
        extra_files=extra_files, extra_info=info, verify=verify, log=log,
    )
