"""Value checks at load time: one ``file:line:col`` ConfigError for the first bad value.

Parsing only checks types; these rules check what the types cannot say: every float is finite, sizes and
counts are positive, probabilities (and decays, IoU thresholds, fractions) are in [0, 1], learning rates
are >= 0, and ``min_level <= max_level`` (with ``min_level >= 2``: no backbone has a level-1 feature map).
Cross-field rules: the feature pyramid's levels lie within the backbone's (:func:`pyramid_levels`, the one
reader of ``fpn.min_level`` / ``max_level``), and the anchor generator covers exactly the feature maps the box
predictor has outputs for.
The location is found by scanning the text for the field's dotted path (the first occurrence; overrides
are reported as the override).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message

from odkit.errors import ConfigError

# Nesting deeper than this is refused before parsing (protobuf's parser recurses once per level).
MAX_DEPTH = 64

_UNIT_INTERVAL = re.compile(
    r"^(.*_)?(probability|prob|keep_prob|keep_probability|iou_threshold|positive_fraction|"
    r"moving_average_decay|min_object_covered|overlap_thresh|min_overlap|max_overlap)$"
)
_POSITIVE = {
    ("TrainConfig", "batch_size"), ("EvalConfig", "batch_size"), ("FixedShapeResizer", "height"),
    ("FixedShapeResizer", "width"), ("KeepAspectRatioResizer", "min_dimension"),
    ("KeepAspectRatioResizer", "max_dimension"), ("Ssd", "num_classes"), ("FasterRcnn", "num_classes"),
    ("BatchNonMaxSuppression", "max_detections_per_class"), ("BatchNonMaxSuppression", "max_total_detections"),
    ("ConditionalShapeResizer", "size_threshold"), ("PadToMultipleResizer", "multiple"),
}
_NON_NEGATIVE = re.compile(r"^(.*_)?(learning_rate|learning_rate_base|warmup_learning_rate|initial_learning_rate|"
                           r"decay_steps|total_steps|warmup_steps|num_steps|weight)$")
_LEVEL_MESSAGES = {"FeaturePyramidNetworks", "BidirectionalFeaturePyramidNetworks", "MultiscaleAnchorGenerator"}


# Feature pyramids (issue 17): the levels of an SSD / Faster R-CNN feature extractor are read here only.
# TF OD API (builders/model_builder.py): with an ``fpn {}`` block its min_level / max_level (proto defaults 3 and
# 7); without one, the FPN extractor's own defaults, which differ by meta-architecture.
FPN_EXTRACTOR_DEFAULT_LEVELS = {"ssd": (3, 7), "faster_rcnn": (2, 6)}
# Every FPN backbone gives C2..C5; the pyramid starts at one of them (levels above 5 are extra convs).
FPN_BACKBONE_LEVELS = (2, 5)
BIFPN_BACKBONE_LEVELS = (3, 5)  # EfficientNet: the BiFPN takes C3..C5


def pyramid_levels(feature_extractor: Any, arch: str) -> tuple[int, int] | None:
    """(min_level, max_level) of the FPN of an ``ssd`` / ``faster_rcnn`` feature_extractor message, None when it
    has no FPN (the BiFPN of EfficientNet extractors is its ``bifpn`` block)."""
    if "fpn" in feature_extractor.DESCRIPTOR.fields_by_name and feature_extractor.HasField("fpn"):
        fpn = feature_extractor.fpn
        return int(fpn.min_level), int(fpn.max_level)
    kind = str(feature_extractor.type)
    if "bifpn" in kind:
        if "bifpn" in feature_extractor.DESCRIPTOR.fields_by_name and feature_extractor.HasField("bifpn"):
            return int(feature_extractor.bifpn.min_level), int(feature_extractor.bifpn.max_level)
        return None
    if "_fpn" in kind:
        return FPN_EXTRACTOR_DEFAULT_LEVELS[arch]
    return None


def nesting_depth(text: str) -> int:
    """Deepest ``{``/``<`` nesting outside strings and comments."""
    depth = best = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if c in "{<":
            depth += 1
            best = max(best, depth)
        elif c in "}>":
            depth -= 1
        i += 1
    return best


def check_depth(text: str, filename: str) -> None:
    if nesting_depth(text) > MAX_DEPTH:
        raise ConfigError(f"blocks nested more than {MAX_DEPTH} deep", where=filename,
                          hint="a pipeline.config is never this deep; check the file")


_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*|[A-Za-z_][\w]*|\[[^\]]*\]|[{}<>:]|\n')


def locate(text: str, path: list[str]) -> tuple[int, int] | None:
    """(line, col) of the first ``path[-1]`` whose enclosing blocks are ``path[:-1]`` (indices ignored)."""
    want = [p for p in path if not p.isdigit()]
    stack: list[str] = []
    pending: str | None = None
    line, line_start = 1, 0
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok == "\n":
            line, line_start = line + 1, m.end()
            continue
        if tok[0] in "#\"'[":
            pending = None
            continue
        if tok in ("{", "<"):
            stack.append(pending or "?")
            pending = None
        elif tok in ("}", ">"):
            if stack:
                stack.pop()
            pending = None
        elif tok == ":":
            continue
        else:
            if stack == want[:-1] and tok == want[-1]:
                return line, m.start() - line_start + 1
            pending = tok
    return None


def _walk(msg: Message, path: list[str]) -> Iterator[tuple[Message, FD, object, list[str]]]:
    for field, value in msg.ListFields():
        if field.is_repeated and not (field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry):
            for i, v in enumerate(value):
                p = [*path, field.name, str(i)]
                if field.type == FD.TYPE_MESSAGE:
                    yield from _walk(v, p)
                else:
                    yield msg, field, v, p
        elif field.type == FD.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                continue
            yield from _walk(value, [*path, field.name])
        else:
            yield msg, field, value, [*path, field.name]
    # rules that involve defaults (unset fields) of the messages present
    name = msg.DESCRIPTOR.name
    fields = msg.DESCRIPTOR.fields_by_name
    if name in _LEVEL_MESSAGES and "min_level" in fields and "max_level" in fields:
        yield msg, fields["min_level"], ("levels", msg.min_level, msg.max_level), [*path, "min_level"]


def problems(config: Message) -> Iterator[tuple[list[str], str]]:
    """(dotted path parts, message) for every bad value in ``config``."""
    for msg, field, value, path in _walk(config, []):
        owner = msg.DESCRIPTOR.name
        if isinstance(value, tuple) and value and value[0] == "levels":
            lo, hi = int(value[1]), int(value[2])  # type: ignore[call-overload]
            if lo < 2:
                yield path, f"min_level {lo}: no backbone has feature maps below level 2"
            elif lo > hi:
                yield path, f"min_level {lo} is greater than max_level {hi}"
            continue
        if field.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
            v = float(value)  # type: ignore[arg-type]
            if not math.isfinite(v):
                yield path, f"{field.name} is {v}, expected a finite number"
                continue
            if _UNIT_INTERVAL.match(field.name) and not 0.0 <= v <= 1.0:
                yield path, f"{field.name} {v} must be in [0, 1]"
            elif _NON_NEGATIVE.match(field.name) and v < 0:
                yield path, f"{field.name} {v} must be >= 0"
            elif (owner, field.name) in _POSITIVE and v <= 0:
                yield path, f"{field.name} {v} must be > 0"
        elif field.type not in (FD.TYPE_STRING, FD.TYPE_BYTES, FD.TYPE_BOOL, FD.TYPE_ENUM, FD.TYPE_MESSAGE):
            v = int(value)  # type: ignore[call-overload]
            if (owner, field.name) in _POSITIVE and v <= 0:
                yield path, f"{field.name} {v} must be > 0"
            elif _NON_NEGATIVE.match(field.name) and v < 0:
                yield path, f"{field.name} {v} must be >= 0"
    for path, msg in _cross_field(config):
        yield path, msg


def _cross_field(config: Message) -> Iterator[tuple[list[str], str]]:
    model = getattr(config, "model", None)
    if model is None:
        return
    arch = model.WhichOneof("model")
    if arch is None:
        return
    m = getattr(model, arch)
    if "image_resizer" in m.DESCRIPTOR.fields_by_name and m.HasField("image_resizer") and \
            m.image_resizer.WhichOneof("image_resizer_oneof") == "keep_aspect_ratio_resizer":
        r = m.image_resizer.keep_aspect_ratio_resizer
        if r.min_dimension > r.max_dimension:
            yield (["model", arch, "image_resizer", "keep_aspect_ratio_resizer", "min_dimension"],
                   f"min_dimension {r.min_dimension} is greater than max_dimension {r.max_dimension}")
    if arch in ("ssd", "faster_rcnn") and m.HasField("feature_extractor"):
        yield from _pyramid_rules(m, arch)


def _pyramid_rules(m: Any, arch: str) -> Iterator[tuple[list[str], str]]:
    """Levels within the backbone's levels; anchors on exactly the levels (feature maps) the model predicts on."""
    fe = m.feature_extractor
    fe_path = ["model", arch, "feature_extractor"]
    levels = pyramid_levels(fe, arch)
    bifpn = "bifpn" in str(fe.type)
    if levels is not None:
        lo, hi = levels
        block = "bifpn" if bifpn else "fpn"
        first, last = BIFPN_BACKBONE_LEVELS if bifpn else FPN_BACKBONE_LEVELS
        where = [*fe_path, block, "min_level"] if fe.HasField(block) else [*fe_path, "type"]
        if not first <= lo <= last:
            yield where, (f"{block} min_level {lo} is outside the backbone's levels {first}..{last} "
                          f"(feature maps C{first}..C{last})")
            return
        if hi < lo:
            return  # reported with the field itself (min_level <= max_level)
    ag_field = "anchor_generator" if arch == "ssd" else "first_stage_anchor_generator"
    ag = getattr(m, ag_field)
    kind = ag.WhichOneof("anchor_generator_oneof")
    if kind == "multiscale_anchor_generator" and levels is not None:
        ms = ag.multiscale_anchor_generator
        if (ms.min_level, ms.max_level) != levels:
            yield ([*["model", arch, ag_field, kind], "max_level" if ms.min_level == levels[0] else "min_level"],
                   f"anchor levels {ms.min_level}..{ms.max_level} differ from the feature pyramid's levels "
                   f"{levels[0]}..{levels[1]}: the box predictor has one output per pyramid level")
    elif kind == "ssd_anchor_generator" and arch == "ssd":
        maps = levels[1] - levels[0] + 1 if levels is not None else (int(fe.num_layers) if not bifpn else None)
        n = int(ag.ssd_anchor_generator.num_layers)
        if maps is not None and n != maps:
            yield (["model", arch, ag_field, kind, "num_layers"],
                   f"ssd_anchor_generator num_layers {n} differs from the {maps} feature maps of the extractor: "
                   "the box predictor has one output per feature map")


def validate(config: Message, text: str | None = None, filename: str = "<config>") -> None:
    """Raise one ConfigError (``file:line:col`` when the field is in ``text``) for the first bad value."""
    for path, message in problems(config):
        pos = locate(text, path) if text is not None else None
        where = f"{filename}:{pos[0]}:{pos[1]}" if pos else f"{filename}: {'.'.join(path)}"
        raise ConfigError(message, where=where, hint=f"fix {'.'.join(p for p in path if not p.isdigit())}")
