"""Which TF checkpoint variables a fine-tune type restores, as the TF OD API's ``restore_from_objects``.

TF2 (``model_lib_v2.load_fine_tune_checkpoint``) restores ``tf.train.Checkpoint(**model.restore_from_objects(
type)).restore(path).expect_partial().assert_existing_objects_matched()``: every variable reachable in the
checkpoint's object graph from the chosen objects, and every model variable under them must be found.

==============  ==========================================================================================
type            TF objects restored (a detection checkpoint saved as ``tf.train.Checkpoint(model=...)``)
==============  ==========================================================================================
full            ``model`` (everything; same shapes required)
detection       SSD / EfficientDet: ``model/_feature_extractor`` (backbone + FPN / BiFPN / extra layers);
                Faster R-CNN: ``model/_feature_extractor_for_proposal_features`` and
                ``model/_feature_extractor_for_box_classifier_features``. Heads stay freshly initialised.
classification  the backbone only. TF expects a *classification* checkpoint (root object
                ``feature_extractor``), which odkit does not read; from a detection checkpoint odkit
                restores the variables that map onto the model's backbone (``backbone_param_prefixes``).
==============  ==========================================================================================

Reachability (not a name prefix) decides, because a variable is stored once under its shortest object path
while it may be reachable from several (EfficientDet's backbone is stored under ``_efficientnet``, not
``classification_backbone``). The name mapping itself is ``odkit.tfcompat.mapping.map_tf_variables``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from odkit.errors import OdkitError, UnsupportedError

VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"

# fine_tune_checkpoint_type detection: TF object paths (from the checkpoint root) per meta-architecture
DETECTION_ROOTS: dict[str, tuple[str, ...]] = {
    "ssd": ("model/_feature_extractor",),
    "faster_rcnn": (
        "model/_feature_extractor_for_proposal_features",
        "model/_feature_extractor_for_box_classifier_features",
    ),
}
CLASSIFICATION_CHECKPOINT_ROOT = "feature_extractor"


def is_tf_checkpoint(path: str | os.PathLike[str]) -> bool:
    """True for what :func:`odkit.tfcompat.open_tf_checkpoint` reads: a ``ckpt-N`` prefix (``.index`` beside it),
    an ``.index`` / ``.data-*`` file, a directory whose ``checkpoint`` text file names such a prefix (or that
    file itself), a SavedModel directory (``variables/variables.index``) or a zoo model directory (its
    ``checkpoint/``). odkit's own checkpoint folders (whose ``checkpoint`` index names ``ckpt-N/`` folders) are not."""
    p = Path(path)
    if Path(str(p) + ".index").is_file() or (p.is_file() and (p.suffix == ".index" or ".data-" in p.name)):
        return True
    if not p.is_dir():
        return p.is_file() and p.name == "checkpoint" and is_tf_checkpoint(p.parent)
    if (p / "variables" / "variables.index").is_file() or (p / "variables.index").is_file():
        return True
    index = p / "checkpoint"
    if index.is_dir():  # a zoo model folder: checkpoint/ beside saved_model/ and pipeline.config
        return is_tf_checkpoint(index)
    if not index.is_file():
        return False
    try:
        text = index.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model_checkpoint_path":
            name = value.strip().strip('"')
            target = Path(name) if os.path.isabs(name) else p / name
            return Path(str(target) + ".index").is_file()
    return False


def _children(node: Any) -> Iterable[tuple[str, int]]:
    for ref in node.children:
        yield ref.local_name, int(ref.node_id)


def object_node(graph: Any, path: str) -> int | None:
    """Node id of the object at ``path`` ('model/_feature_extractor') in a TrackableObjectGraph, or None."""
    node = 0
    for part in path.split("/"):
        node = next((i for name, i in _children(graph.nodes[node]) if name == part), -1)
        if node < 0:
            return None
    return node


def reachable_variables(graph: Any, paths: Sequence[str]) -> set[str]:
    """Variable names (bundle keys minus ``/.ATTRIBUTES/VARIABLE_VALUE``) reachable from any object in ``paths``."""
    stack = [n for n in (object_node(graph, p) for p in paths) if n is not None]
    seen = set(stack)
    out: set[str] = set()
    while stack:
        node = graph.nodes[stack.pop()]
        for attr in node.attributes:
            key = attr.checkpoint_key
            if attr.name == "VARIABLE_VALUE" and key.endswith(VALUE_SUFFIX):
                out.add(key[: -len(VALUE_SUFFIX)])
        for _, child in _children(node):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return out


@dataclass
class TFSelection:
    """Result of :func:`select_tf_tensors`: values to copy into the model and what was left out."""

    kind: str
    scope: str  # human description of what was restored, e.g. "model/_feature_extractor"
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # odkit name -> value (model's shape)
    sources: dict[str, str] = field(default_factory=dict)  # odkit name -> TF variable name
    outside: list[str] = field(default_factory=list)  # TF variables outside the scope (not restored)
    unmatched: list[str] = field(default_factory=list)  # TF variables nothing in the model maps to
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    # (odkit name, TF name, checkpoint shape after layout transform, model shape)
    fresh: list[str] = field(default_factory=list)  # odkit tensors not restored


def _arch(model_config: Any) -> str:
    arch = model_config.WhichOneof("model")
    if arch not in DETECTION_ROOTS:
        raise UnsupportedError(f"TF checkpoints are not mapped for model {arch!r}", where="model")
    return str(arch)


def select_tf_tensors(
    model: nn.Module,
    model_config: Any,
    ckpt: Any,
    kind: str,
    *,
    load_all: bool = False,
) -> TFSelection:
    """Read the variables of ``ckpt`` (an opened TF checkpoint) that ``kind`` restores, mapped and transformed
    to odkit tensors. ``load_all`` (TF1's load_all_detection_checkpoint_vars): every variable whose shape fits.

    Raises nothing for shape mismatches or gaps: the caller decides (see odkit.training.finetune)."""
    from odkit.tfcompat.mapping import map_tf_variables

    arch = _arch(model_config)
    graph = ckpt.object_graph()
    if object_node(graph, "model") is None:
        if object_node(graph, CLASSIFICATION_CHECKPOINT_ROOT) is not None:
            raise UnsupportedError(
                "TF classification checkpoints (object root 'feature_extractor') are not read",
                where=str(ckpt.prefix),
                hint="fine-tune from a TF2 detection zoo checkpoint, an odkit checkpoint or torchvision:// weights",
            )
        raise OdkitError(
            "not a TF OD API detection checkpoint (no 'model' object in its object graph)", where=str(ckpt.prefix)
        )
    plan = map_tf_variables(model, model_config, ckpt)
    target = model.state_dict()
    if kind == "full" or load_all:
        in_scope = {m.tf_name for m in plan.maps}
        scope = "model (everything)"
    elif kind == "detection":
        roots = DETECTION_ROOTS[arch]
        in_scope = reachable_variables(graph, roots)
        scope = " + ".join(roots)
    elif kind == "classification":
        prefixes = tuple(getattr(model, "backbone_param_prefixes", ()) or ())
        if not prefixes:
            raise UnsupportedError(
                "this model does not name its backbone, so classification cannot be restored",
                where="train_config.fine_tune_checkpoint_type",
                hint="use detection or full",
            )
        in_scope = {m.tf_name for m in plan.maps if m.odkit_name.startswith(prefixes)}
        scope = "the backbone (" + ", ".join(p.rstrip(".") for p in prefixes) + ")"
    else:  # pragma: no cover - fine_tune_type() validates first
        raise UnsupportedError(f"fine_tune_checkpoint_type {kind!r} is not supported")
    sel = TFSelection(kind=kind, scope=scope)
    mapped_tf = {m.tf_name for m in plan.maps}
    for m in plan.maps:
        if m.tf_name not in in_scope:
            continue
        want = target.get(m.odkit_name)
        if want is None:
            raise OdkitError(f"name mapping names {m.odkit_name!r}, which the model does not have",
                             where=str(ckpt.prefix))
        value = np.asarray(m.transform(ckpt.read(m.tf_name)))
        if tuple(value.shape) != tuple(want.shape):
            sel.mismatched.append((m.odkit_name, m.tf_name, tuple(value.shape), tuple(want.shape)))
            continue
        sel.tensors[m.odkit_name] = torch.from_numpy(np.ascontiguousarray(value)).to(want.dtype)
        sel.sources[m.odkit_name] = m.tf_name
    sel.outside = sorted(n for n in mapped_tf if n not in in_scope)
    sel.unmatched = sorted(plan.unmatched_tf)
    sel.fresh = [k for k in target if k not in sel.tensors]
    return sel


def read_tf_state_dict(model: nn.Module, model_config: Any, path: str | os.PathLike[str],
                       log: Any = None) -> dict[str, torch.Tensor]:
    """Every tensor of ``model`` from a TF checkpoint (``full``: same shapes, nothing left unfilled); for
    export and convert-checkpoint. One-line OdkitError naming the first problem."""
    from odkit.tfcompat import open_tf_checkpoint

    ckpt = open_tf_checkpoint(path)
    sel = select_tf_tensors(model, model_config, ckpt, "full")
    check_full(sel, str(ckpt.prefix))
    if sel.unmatched and log is not None:
        log(f"warning: {len(sel.unmatched)} variable(s) of the TF checkpoint are not used by this model "
            f"(e.g. {sel.unmatched[0]})")
    return sel.tensors


def check_full(sel: TFSelection, where: str) -> None:
    """``full``: the checkpoint must fill every model tensor with the same shape."""
    if sel.mismatched:
        name, tf_name, have, want = sel.mismatched[0]
        raise OdkitError(
            f"{tf_name} has shape {have} (as {name}) but the model needs {want} "
            f"({len(sel.mismatched)} mismatch(es))",
            where=where,
            hint="use the pipeline.config the checkpoint was trained with (num_classes, depth, ...), or "
            "fine_tune_checkpoint_type: detection",
        )
    if sel.fresh:
        raise OdkitError(
            f"{len(sel.fresh)} model tensor(s) have no value in the checkpoint (e.g. {sel.fresh[0]})",
            where=where,
            hint="use the pipeline.config the checkpoint was trained with",
        )
