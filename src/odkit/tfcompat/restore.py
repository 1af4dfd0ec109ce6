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
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from odkit.errors import OdkitError, UnsupportedError
from odkit.models.base import restore_prefixes
from odkit.tfcompat.mapping import map_tf_variables
from odkit.tfcompat.reader import open_tf_checkpoint

VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
NOT_RESTORED_BUFFERS = ("num_batches_tracked",)  # torch BN step counters: TF has none, nothing reads them

# fine_tune_checkpoint_type detection: TF object paths (from the checkpoint root) per meta-architecture
DETECTION_ROOTS: dict[str, tuple[str, ...]] = {
    "ssd": ("model/_feature_extractor",),
    "faster_rcnn": (
        "model/_feature_extractor_for_proposal_features",
        "model/_feature_extractor_for_box_classifier_features",
    ),
    "center_net": ("model/_feature_extractor",),  # TF CenterNetMetaArch.restore_from_objects('detection')
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


# Object-graph edges that tf.saved_model.save adds beside a Keras model's own attributes (functions, traces,
# the variable lists of every layer): a SavedModel's variables are stored under the shortest path, e.g.
# `_model/_box_predictor/variables/0`; without these edges the shortest path is the checkpoint's name.
_SAVED_MODEL_EDGES = frozenset({
    "__call__", "variables", "trainable_variables", "non_trainable_variables", "regularization_losses",
    "keras_api", "metrics", "signatures", "serving_default", "call_and_return_all_conditional_losses",
    "call_and_return_conditional_losses", "_jit_compiled_convolution_op", "_side_input_names",
})
_SAVED_MODEL_EDGE_RE = re.compile(r"^(trace|capture)_\d+$")
SAVED_MODEL_ROOT = "_model"  # exporter_lib_v2.DetectionInferenceModule._model


def _children(node: Any, skip_saved_model_edges: bool = False) -> Iterable[tuple[str, int]]:
    for ref in node.children:
        name = ref.local_name
        if skip_saved_model_edges and (name in _SAVED_MODEL_EDGES or _SAVED_MODEL_EDGE_RE.match(name)):
            continue
        yield name, int(ref.node_id)


def _variable_key(node: Any) -> str | None:
    for attr in node.attributes:
        key = attr.checkpoint_key
        if attr.name == "VARIABLE_VALUE" and key.endswith(VALUE_SUFFIX):
            return str(key[: -len(VALUE_SUFFIX)])
    return None


class TFModelVariables:
    """The detection model's variables of a TF checkpoint under the names a ``tf.train.Checkpoint(model=...)``
    gives them (``model/_feature_extractor/...``), from a training / zoo checkpoint or from the variables of a
    SavedModel written by exporter_main_v2 (model under ``_model``, keys such as ``_model/.../variables/3``).

    Offers what :func:`odkit.tfcompat.mapping.map_tf_variables` uses of a TFCheckpoint (``prefix``,
    ``variables()``, ``read()``, ``raw_keys()``, ``object_graph()``) plus :meth:`reachable`."""

    def __init__(self, ckpt: Any) -> None:
        self.ckpt = ckpt
        self.prefix = ckpt.prefix
        self.graph = ckpt.object_graph()
        roots = dict(_children(self.graph.nodes[0]))
        if "model" in roots:
            self.saved_model = False
            self._model_node = roots["model"]
            self._names = {n: n for n in ckpt.variables()}
        elif SAVED_MODEL_ROOT in roots:
            self.saved_model = True
            self._model_node = roots[SAVED_MODEL_ROOT]
            self._names = self._saved_model_names()
        elif CLASSIFICATION_CHECKPOINT_ROOT in roots:
            raise UnsupportedError(
                "TF classification checkpoints (object root 'feature_extractor') are not read",
                where=str(ckpt.prefix),
                hint="fine-tune from a TF2 detection zoo checkpoint, an odkit checkpoint or torchvision:// weights",
            )
        else:
            raise OdkitError("not a TF OD API detection checkpoint (no 'model' object in its object graph)",
                             where=str(ckpt.prefix))

    def _saved_model_names(self) -> dict[str, str]:
        """checkpoint-style name -> stored variable name, by a breadth-first walk without SavedModel edges."""
        stored = self.ckpt.variables()
        out: dict[str, str] = {}
        seen = {self._model_node}
        queue = [(self._model_node, "model")]
        for node_id, path in queue:  # breadth first, children in stored order (as TF names checkpoint keys)
            node = self.graph.nodes[node_id]
            key = _variable_key(node)
            if key is not None and key in stored:
                out.setdefault(path, key)
            for name, child in _children(node, skip_saved_model_edges=True):
                if child not in seen:
                    seen.add(child)
                    queue.append((child, f"{path}/{name}"))
        missing = len({v for v in stored if v.startswith(SAVED_MODEL_ROOT + "/")} - set(out.values()))
        if missing:
            raise OdkitError(f"{missing} variable(s) of the SavedModel are not reachable as model attributes",
                             where=str(self.prefix), hint="use the zoo's checkpoint/ folder instead")
        return out

    def variables(self) -> dict[str, Any]:
        from dataclasses import replace

        stored = self.ckpt.variables()
        return {n: (stored[k] if n == k else replace(stored[k], name=n)) for n, k in self._names.items()}

    def read(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise OdkitError(f"no variable {name!r} in the checkpoint", where=str(self.prefix))
        return np.asarray(self.ckpt.read(self._names[name]))

    def raw_keys(self) -> list[str]:
        return list(self.ckpt.raw_keys())

    def object_graph(self) -> Any:
        return self.graph

    def reachable(self, paths: Sequence[str]) -> set[str]:
        """Names of the variables reachable from any object at the checkpoint-style ``paths`` ('model/...')."""
        skip = self.saved_model
        back = {k: n for n, k in self._names.items()}
        starts = []
        for path in paths:
            parts = path.split("/")
            if parts[0] != "model":
                continue
            node: int | None = self._model_node
            for part in parts[1:]:
                node = next((i for name, i in _children(self.graph.nodes[node], skip) if name == part), None)
                if node is None:
                    break
            if node is not None:
                starts.append(node)
        seen = set(starts)
        stack = list(starts)
        out: set[str] = set()
        while stack:
            node = self.graph.nodes[stack.pop()]
            key = _variable_key(node)
            if key is not None and key in back:
                out.add(back[key])
            for _, child in _children(node, skip):
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
    mismatched: list[tuple[str, str, str]] = field(default_factory=list)  # in scope: (odkit, TF, description)
    fresh: list[str] = field(default_factory=list)  # odkit tensors not restored (BN step counters aside)


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
    """Read the variables of ``ckpt`` (an opened TF checkpoint, or its TFModelVariables) that ``kind``
    restores, mapped and transformed to odkit tensors. ``load_all`` (TF1's load_all_detection_checkpoint_vars):
    every variable whose shape fits. Raises nothing for shape mismatches or gaps: the caller decides (see
    odkit.training.finetune)."""
    arch = _arch(model_config)
    if not isinstance(ckpt, TFModelVariables):
        ckpt = TFModelVariables(ckpt)
    plan = map_tf_variables(model, model_config, ckpt)
    target = model.state_dict()
    all_tf = set(ckpt.variables())
    mismatched = [_parse_mismatch(text) for text in plan.mismatched]
    if kind == "full" or load_all:
        in_scope = all_tf
        scope = "model (everything)"
    elif kind == "detection":
        roots = DETECTION_ROOTS[arch]
        in_scope = ckpt.reachable(roots)
        scope = " + ".join(roots)
    elif kind == "classification":
        prefixes = restore_prefixes(model, "classification")
        in_scope = {m.tf_name for m in plan.maps if m.odkit_name.startswith(prefixes)}
        in_scope |= {tf for name, tf, _ in mismatched if name.startswith(prefixes)}
        scope = "the backbone (" + ", ".join(p.rstrip(".") for p in prefixes) + ")"
    else:  # pragma: no cover - fine_tune_type() validates first
        raise UnsupportedError(f"fine_tune_checkpoint_type {kind!r} is not supported")
    sel = TFSelection(kind=kind, scope=scope)
    for m in plan.maps:  # shapes already checked by the plan
        if m.tf_name not in in_scope:
            continue
        want = target[m.odkit_name]
        value = np.asarray(m.transform(ckpt.read(m.tf_name)))
        assert tuple(value.shape) == tuple(want.shape), (m.odkit_name, value.shape, want.shape)
        sel.tensors[m.odkit_name] = torch.from_numpy(np.ascontiguousarray(value)).to(want.dtype)
        sel.sources[m.odkit_name] = m.tf_name
    sel.mismatched = [mm for mm in mismatched if mm[1] in in_scope]
    unmatched = set(plan.unmatched_tf) - {tf for _, tf, _ in mismatched}
    sel.outside = sorted(n for n in all_tf - unmatched if n not in in_scope)
    sel.unmatched = sorted(unmatched)
    sel.fresh = [k for k in target if k not in sel.tensors and not k.endswith(NOT_RESTORED_BUFFERS)]
    return sel


def _parse_mismatch(text: str) -> tuple[str, str, str]:
    """(odkit name, TF name, text) from a MappingPlan.mismatched entry 'odkit [shape] <- tf [shape]'."""
    left, _, right = text.partition(" <- ")
    return left.split(" [")[0], right.split(" [")[0], text


def read_tf_state_dict(model: nn.Module, model_config: Any, path: str | os.PathLike[str],
                       log: Any = None) -> dict[str, torch.Tensor]:
    """Load every tensor of ``model`` from a TF checkpoint (``full``: same shapes, nothing left unfilled) and
    return its whole state dict; for export and convert-checkpoint. One-line OdkitError naming the first
    problem."""
    ckpt = open_tf_checkpoint(path)
    sel = select_tf_tensors(model, model_config, ckpt, "full")
    check_full(sel, str(ckpt.prefix))
    if sel.unmatched and log is not None:
        log(f"warning: {len(sel.unmatched)} variable(s) of the TF checkpoint are not used by this model "
            f"(e.g. {sel.unmatched[0]})")
    model.load_state_dict(sel.tensors, strict=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}  # + BN step counters, as initialised


def check_full(sel: TFSelection, where: str) -> None:
    """``full``: the checkpoint must fill every model tensor with the same shape."""
    if sel.mismatched:
        raise OdkitError(
            f"full fine-tune checkpoint does not match the model: shapes differ for {sel.mismatched[0][2]} "
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
