"""``odkit config explain PATH``: who reads a config field, its default and its documentation.

The field is set (to its default, or left as the given config has it) in a config that builds: ``--config
FILE`` or a built-in one for the field's meta-architecture; then the read-tracking dry build of
odkit.workflows.config_check records the ``file:line (function)`` of every read of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message

from odkit.config import load, load_text
from odkit.config.proto_docs import field_doc, field_location, proto_file
from odkit.config.support import ACCEPTED
from odkit.config.values import format_scalar, rule_key
from odkit.errors import ConfigError
from odkit.protos import pipeline_pb2
from odkit.workflows.config_check import dry_build, verdicts

BUILTIN = Path(__file__).resolve().parents[1] / "configs" / "ssd_mobilenet_v2_fpnlite_128x128_demo.config"

# Smallest models that build, for fields of the other meta-architectures (the rest of the demo config is kept).
_MODELS = {
    "faster_rcnn": """faster_rcnn {
  num_classes: 3
  image_resizer { fixed_shape_resizer { height: 256 width: 256 } }
  feature_extractor { type: "faster_rcnn_resnet50_keras" }
  first_stage_anchor_generator { grid_anchor_generator {
    scales: [0.25, 0.5, 1.0, 2.0] aspect_ratios: [0.5, 1.0, 2.0] height_stride: 16 width_stride: 16 } }
  first_stage_box_predictor_conv_hyperparams {
    regularizer { l2_regularizer { weight: 0.0 } } initializer { truncated_normal_initializer { stddev: 0.01 } } }
  first_stage_max_proposals: 100
  initial_crop_size: 14
  maxpool_kernel_size: 2
  maxpool_stride: 2
  second_stage_box_predictor { mask_rcnn_box_predictor { fc_hyperparams {
    regularizer { l2_regularizer { weight: 0.0 } }
    initializer { variance_scaling_initializer { factor: 1.0 uniform: true mode: FAN_AVG } } } } }
  second_stage_post_processing {
    batch_non_max_suppression { iou_threshold: 0.6 max_detections_per_class: 100 max_total_detections: 100 }
    score_converter: SOFTMAX }
}""",
    "center_net": """center_net {
  num_classes: 3
  feature_extractor { type: "resnet_v1_50_fpn" }
  image_resizer { fixed_shape_resizer { height: 128 width: 128 } }
  object_center_params { classification_loss { penalty_reduced_logistic_focal_loss { alpha: 2.0 beta: 4.0 } } }
  object_detection_task { localization_loss { l1_localization_loss {} } }
}""",
}


@dataclass
class Explanation:
    path: str
    field: FD
    default: str
    doc: str
    proto: str  # file:line of the field in the .proto
    verdict: str  # honoured / accepted / refused / not read / not checked
    reason: str = ""
    readers: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        kind = {FD.TYPE_MESSAGE: "message " + (self.field.message_type.name if self.field.message_type else "")}
        t = kind.get(self.field.type) or _type_name(self.field)
        out = [f"{self.path}  ({'repeated ' if self.field.is_repeated else ''}{t}, {rule_key(self.field)})",
               f"  default:    {self.default}",
               f"  documented: {self.doc or '(no comment in the .proto)'}  [{self.proto}]"]
        if self.readers:
            out.append("  read by:    " + self.readers[0])
            out += ["              " + r for r in self.readers[1:]]
        verdict = {"honoured": "honoured", "accepted": f"accepted, no effect: {self.reason}",
                   "refused": f"refused: {self.reason}", "not read": "not read by odkit (config check reports it)",
                   "not checked": f"not checked: {self.reason}"}[self.verdict]
        out.append(f"  verdict:    {verdict}")
        return out


def _type_name(fd: FD) -> str:
    if fd.type == FD.TYPE_ENUM:
        return "enum " + fd.enum_type.name + " {" + ", ".join(v.name for v in fd.enum_type.values) + "}"
    names = {FD.TYPE_BOOL: "bool", FD.TYPE_STRING: "string", FD.TYPE_FLOAT: "float", FD.TYPE_DOUBLE: "double",
             FD.TYPE_INT32: "int32", FD.TYPE_INT64: "int64", FD.TYPE_UINT32: "uint32", FD.TYPE_UINT64: "uint64",
             FD.TYPE_BYTES: "bytes"}
    return names.get(fd.type, "scalar")


def _parts(path: str) -> list[tuple[str, int | None]]:
    out = []
    for part in path.split("."):
        name, _, index = part.partition("[")
        if index and not index.rstrip("]").isdigit():
            raise ConfigError(f"bad index in {part!r}", where=path, hint="write list elements as name[0]")
        out.append((name, int(index.rstrip("]")) if index else None))
    return out


def _resolve(path: str) -> tuple[list[tuple[FD, int | None]], str]:
    """Field descriptors along ``path`` (repeated message fields without an index get [0]) and the
    normalised dotted path as the read log writes it."""
    desc = pipeline_pb2.TrainEvalPipelineConfig.DESCRIPTOR
    chain: list[tuple[FD, int | None]] = []
    shown = []
    parts = _parts(path)
    for k, (name, index) in enumerate(parts):
        if desc is None:
            raise ConfigError(f"{'.'.join(p for p, _ in parts[:k])} is not a message", where=path)
        fd = desc.fields_by_name.get(name)
        if fd is None:
            close = sorted(desc.fields_by_name)
            raise ConfigError(f"{desc.name} has no field {name!r}", where=path,
                              hint="fields: " + ", ".join(close[:30]) + (" ..." if len(close) > 30 else ""))
        last = k == len(parts) - 1
        if fd.is_repeated and fd.type == FD.TYPE_MESSAGE and index is None and not last:
            index = 0
        chain.append((fd, index))
        shown.append(f"{name}[{index}]" if index is not None else name)
        desc = fd.message_type if fd.type == FD.TYPE_MESSAGE else None
    return chain, ".".join(shown)


def _base(chain: list[tuple[FD, int | None]], config_path: str | None) -> Message:
    if config_path:
        return load(config_path)
    config = load(BUILTIN)
    if len(chain) > 1 and chain[0][0].name == "model" and chain[1][0].name in _MODELS:
        config.ClearField("model")
        config.model.MergeFrom(load_text("model { " + _MODELS[chain[1][0].name] + " }", "<builtin>").model)
    return config


def _set_present(config: Message, chain: list[tuple[FD, int | None]]) -> None:
    """Make the field present (its current value, else its default) with every block above it."""
    msg: Any = config
    for k, (fd, index) in enumerate(chain):
        last = k == len(chain) - 1
        if fd.type == FD.TYPE_MESSAGE and not fd.message_type.GetOptions().map_entry:
            container = getattr(msg, fd.name)
            if fd.is_repeated:
                i = index or 0
                while len(container) <= i:
                    container.add()
                msg = container[i]
            else:
                container.SetInParent()
                msg = container
        elif fd.is_repeated:
            container = getattr(msg, fd.name)
            if index is not None:
                while len(container) <= index:
                    container.append(fd.default_value if fd.type != FD.TYPE_ENUM else fd.enum_type.values[0].number)
            elif not len(container) and last and fd.type not in (FD.TYPE_MESSAGE,):
                pass  # an empty list: the reader still looks at it
        elif last and not msg.HasField(fd.name):
            setattr(msg, fd.name, getattr(msg, fd.name))


def _default(fd: FD) -> str:
    if fd.type == FD.TYPE_MESSAGE:
        return "(a block; unset)"
    if fd.is_repeated:
        return "[] (empty)"
    text = format_scalar(fd, fd.default_value)
    return text + ("" if fd.has_default_value else "  (the type's zero: no default in the .proto)")


def explain(path: str, config_path: str | None = None) -> Explanation:
    chain, dotted = _resolve(path)
    fd = chain[-1][0]
    config = _base(chain, config_path)
    _set_present(config, chain)
    built = dry_build(config)
    places = built.log.reads.get(dotted, [])
    judged = verdicts(config, built)
    leaf = [v for k, v in judged.items() if k == dotted or k.startswith(dotted + ".") or k.startswith(dotted + "[")]
    kind, reason = (leaf[0][0], leaf[0][1]) if leaf else ("honoured" if places else "not read", "")
    if rule_key(fd) in ACCEPTED:
        kind, reason = "accepted", ACCEPTED[rule_key(fd)]
    line = field_location(fd)
    proto = f"{_short(str(proto_file(fd)))}:{line}" if line else _short(str(proto_file(fd)))
    doc, source = field_doc(fd)
    return Explanation(dotted, fd, _default(fd), f"{doc} ({source})" if doc else "", proto, kind, reason,
                       [_short(p) for p in places])


def _short(place: str) -> str:
    """A path inside the odkit package, from src/ (``src/odkit/builders/x.py:12 (build)``)."""
    marker = "/src/odkit/"
    i = place.find(marker)
    if i >= 0:
        return place[i + 1:]
    i = place.find("/odkit/")
    return place[i + 1:] if i >= 0 else place
