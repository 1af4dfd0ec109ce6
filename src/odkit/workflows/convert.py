"""`odkit convert-checkpoint`: a TF2 checkpoint -> a normal odkit checkpoint folder.

``D/ckpt-0/{model.safetensors,meta.json}`` + the ``D/checkpoint`` index + ``D/pipeline.config``: what `odkit
train` writes, so ``D`` is accepted by `train` (as fine_tune_checkpoint, or as --model_dir to continue from
it), `eval` and `export`. The folder is built beside ``D`` and renamed into place when complete; ``D`` must
not exist or be empty.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from odkit import checkpoints as ck
from odkit.builders.model_builder import build_model
from odkit.config import load, to_text
from odkit.errors import OdkitError
from odkit.tfcompat.reader import open_tf_checkpoint
from odkit.tfcompat.restore import is_tf_checkpoint, read_tf_state_dict
from odkit.workflows.config_check import require_supported


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def convert_tf_checkpoint(
    pipeline_config_path: str,
    tf_checkpoint: str,
    output_dir: str,
    *,
    overrides: Sequence[str] = (),
    config_overrides: Sequence[str] = (),
    allow_unsupported: bool = False,
    log: Callable[[str], None] = _stderr,
) -> Path:
    """Map every variable of ``tf_checkpoint`` onto the model of the config and write ``output_dir``."""
    out = Path(output_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OdkitError("output folder exists and is not empty", where=str(out),
                         hint="pass a new --output_dir (nothing is overwritten)")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise OdkitError("parent folder of the output does not exist", where=str(parent),
                         hint="create it first or pass another --output_dir")
    if not is_tf_checkpoint(tf_checkpoint):
        raise OdkitError(
            "not a TF2 checkpoint",
            where=tf_checkpoint,
            hint="pass a ckpt-N prefix (ckpt-N.index beside it), a folder with a TF `checkpoint` file, or a "
            "saved_model/ folder",
        )
    config = load(pipeline_config_path, overrides=overrides, config_overrides=config_overrides)
    require_supported(config, allow_unsupported, path=pipeline_config_path)
    prefix = Path(open_tf_checkpoint(tf_checkpoint).prefix)
    model = build_model(config.model, is_training=False)
    state = read_tf_state_dict(model, config.model, tf_checkpoint, log=lambda m: log(f"odkit convert-checkpoint: {m}"))
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as exc:
        raise OdkitError(f"cannot write the output: {exc.strerror}", where=str(parent)) from None
    try:
        ck.save_checkpoint(tmp, 0, state, extra_meta={"converted_from": str(prefix.resolve()),
                                                      "source_format": "tensorflow"})
        (tmp / "pipeline.config").write_text(to_text(config))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OdkitError(f"cannot write the output: {exc.strerror or exc}", where=str(out)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"odkit convert-checkpoint: wrote {out / 'ckpt-0'} (every model tensor mapped from {prefix})")
    return out / "ckpt-0"
