"""`odkit config check`: support derived from the code that reads the config (issue 17 items 1-2)."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fnmatch
import functools
from pathlib import Path
from typing import Any

import pytest
import torch
from google.protobuf.descriptor import FieldDescriptor as FD

from odkit.config import load, load_text
from odkit.config.support import ACCEPTED
from odkit.config.tracking import ReadLog, track
from odkit.errors import OdkitError, UnsupportedError
from odkit.workflows.config_check import (
    check,
    components,
    dry_build,
    require_supported,
    verdicts,
    without_weights,
)

REPO = Path(__file__).resolve().parents[1]
BUILTIN = REPO / "src" / "odkit" / "configs"
OLD_VERDICTS = Path(__file__).parent / "data" / "config_check_old_verdicts.txt"


# ---- the old registry's verdicts -------------------------------------------------------------------


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")


def _old_verdicts() -> tuple[dict[str, list[str]], list[tuple[str, str, str]]]:
    old: dict[str, list[str]] = {}
    diffs: list[tuple[str, str, str]] = []
    for line in OLD_VERDICTS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line[0] in "+-":
            sign, cfg, field = line.split("#")[0].split()
            diffs.append((sign, cfg, field))
            continue
        cfg, path = line.split()
        old.setdefault(cfg, [])
        if path != "-":
            old[cfg].append(path)
    return old, diffs


def _configs(compat_dir: Path) -> list[tuple[str, Path]]:
    root = compat_dir / "tfod_configs"
    out = [(str(p.relative_to(root)), p) for p in sorted(root.rglob("*.config"))]
    out += [(f"configs/{p.name}", p) for p in sorted(BUILTIN.glob("*.config"))]
    return out


def test_verdicts_equal_the_old_registry(compat_dir: Path) -> None:
    """Every set field of every shared config: honoured now <=> honoured by the old registry, except the
    differences explained in tests/data/config_check_old_verdicts.txt (slow-ish: ~75 dry builds, ~15 s)."""
    old, diffs = _old_verdicts()
    used = set()
    unexplained = []
    configs = _configs(compat_dir)
    assert len(configs) == len(old), "the verdict file lists another set of configs"
    for rel, path in configs:
        config = load(path)
        for leaf, (kind, _reason, _r) in verdicts(config, dry_build(config)).items():
            was = any(_under(leaf, p) for p in old[rel])
            now = kind in ("refused", "not read", "not checked")
            if was == now:
                continue
            sign = "+" if now else "-"
            match = [d for d in diffs if d[0] == sign and fnmatch.fnmatch(rel, d[1])
                     and fnmatch.fnmatch(leaf, d[2].replace("[", "[[]"))]  # "[" is literal in the globs
            if match:
                used.update(match)
            else:
                unexplained.append(f"{sign} {rel} {leaf} ({kind})")
    assert not unexplained, "\n".join(unexplained)
    assert set(diffs) == used, f"explanations that match nothing: {set(diffs) - used}"


# ---- the check on small configs ----------------------------------------------------------------------


DEMO = BUILTIN / "ssd_mobilenet_v2_fpnlite_128x128_demo.config"


def test_builtin_configs_are_fully_honoured() -> None:
    for path in sorted(BUILTIN.glob("*.config")):
        result = check(load(path))
        assert result.unsupported == [] and result.errors == [], path.name


def test_unread_field_is_reported_and_refusal_named() -> None:
    config = load(DEMO)
    config.train_config.bias_grad_multiplier = 2.0  # refused by the code that reads it
    config.eval_config.eval_master = "host:1"  # read by nothing
    config.train_config.sync_replicas = True  # accepted, no effect
    result = check(config)
    by_path = {f.path: f for f in result.findings}
    assert by_path["train_config.bias_grad_multiplier"].kind == "refused"
    assert by_path["eval_config.eval_master"].kind == "not read"
    assert by_path["train_config.sync_replicas"].kind == "accepted"
    assert "accepted, no effect: DDP" in str(by_path["train_config.sync_replicas"])
    assert [f.path for f in result.unsupported] == ["train_config.bias_grad_multiplier", "eval_config.eval_master"]


def test_fields_behind_a_refusal_are_still_judged() -> None:
    config = load(DEMO)
    config.model.ssd.feature_extractor.type = "ssd_inception_v2"
    config.model.ssd.box_predictor.weight_shared_convolutional_box_predictor.box_encodings_clip_range.min = -1
    result = check(config)
    kinds = {f.path: f.kind for f in result.unsupported}
    assert kinds["model.ssd.feature_extractor.type"] == "refused"
    # built again with a supported extractor in its place: the box predictor is still checked
    assert kinds["model.ssd.box_predictor.weight_shared_convolutional_box_predictor.box_encodings_clip_range"] == "refused"
    assert len(kinds) == 2


def test_require_supported(capsys: pytest.CaptureFixture[str]) -> None:
    config = load(DEMO)
    assert require_supported(config) == []
    config.eval_config.eval_master = "x"
    with pytest.raises(UnsupportedError, match=r"1 config field\(s\) .*eval_config.eval_master"):
        require_supported(config, path="p.config")
    assert [p.path for p in require_supported(config, allow_unsupported=True)] == ["eval_config.eval_master"]
    assert "warning: ignoring 1" in capsys.readouterr().err


def test_accepted_fields_are_not_read() -> None:
    """An ACCEPTED field that some code reads is not 'no effect': it must leave the list."""
    for path in sorted(BUILTIN.glob("*.config")):
        built = dry_build(load(path))
        for dotted in built.log.reads:
            name = dotted.rsplit(".", 1)[-1].split("[")[0]
            keys = [k for k in ACCEPTED if k.endswith("." + name)]
            for k in keys:  # same field name in another message is fine; check the owner by walking
                assert not _reads_accepted(dotted, k), f"{dotted} is read but listed in ACCEPTED ({k})"


def _reads_accepted(dotted: str, key: str) -> bool:
    from odkit.protos import pipeline_pb2

    desc = pipeline_pb2.TrainEvalPipelineConfig.DESCRIPTOR
    fd = None
    for part in dotted.split("."):
        fd = desc.fields_by_name.get(part.split("[")[0]) if desc is not None else None
        if fd is None:
            return False
        desc = fd.message_type
    owner = fd.containing_type.full_name.removeprefix("odkit.protos.")
    return f"{owner}.{fd.name}" == key


def test_read_places_are_recorded() -> None:
    log = ReadLog()
    view = track(load(DEMO), log)
    from odkit.builders.model_builder import build_model

    with without_weights():
        build_model(view.model, is_training=True)
    places = log.reads["model.ssd.feature_extractor.fpn.min_level"]
    assert [p.split("/src/")[-1].split(":")[0] for p in places] == ["odkit/config/validate.py"], places  # one reader


# ---- every honoured scalar changes what is built ------------------------------------------------------


def _fingerprint(obj: Any, seen: dict[int, Any] | None = None, depth: int = 0) -> Any:
    """A comparable summary of everything a built object holds (modules, settings, closures)."""
    seen = {} if seen is None else seen  # id -> object: keeps the objects alive so that ids are not reused
    if depth > 300:
        return "deep"
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    if isinstance(obj, enum.Enum):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        if obj.is_meta:
            return ("tensor", tuple(obj.shape), str(obj.dtype), obj.requires_grad)
        return ("tensor", tuple(obj.shape), str(obj.dtype), obj.requires_grad,
                round(float(obj.detach().double().sum()), 4), round(float(obj.detach().double().square().sum()), 4))
    if isinstance(obj, torch.dtype | torch.device):
        return str(obj)
    if id(obj) in seen:
        return "seen"
    seen[id(obj)] = obj
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_fingerprint(x, seen, depth + 1) for x in obj]
        return tuple(sorted(map(repr, items))) if isinstance(obj, (set, frozenset)) else tuple(items)
    if isinstance(obj, dict):
        return tuple((str(k), _fingerprint(v, seen, depth + 1)) for k, v in obj.items())
    if isinstance(obj, functools.partial):
        return ("partial", _fingerprint(obj.func, seen, depth + 1), _fingerprint(obj.args, seen, depth + 1),
                _fingerprint(obj.keywords, seen, depth + 1))
    if callable(obj) and hasattr(obj, "__code__"):
        cells = [c.cell_contents for c in (obj.__closure__ or ()) if _has_contents(c)]
        return ("fn", obj.__qualname__, _fingerprint(cells, seen, depth + 1),
                _fingerprint(getattr(obj, "__self__", None), seen, depth + 1))
    if hasattr(obj, "__self__") and hasattr(obj, "__func__"):
        return ("method", obj.__func__.__qualname__, _fingerprint(obj.__self__, seen, depth + 1))
    state: dict[str, Any] = {}
    if isinstance(obj, torch.nn.Module):
        skip = {"_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_state_dict_hooks",
                "_load_state_dict_pre_hooks", "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
                "_forward_hooks_always_called", "_state_dict_pre_hooks", "_load_state_dict_post_hooks",
                "_backward_pre_hooks", "_non_persistent_buffers_set"}
        state = {k: v for k, v in vars(obj).items() if k not in skip}
    elif dataclasses.is_dataclass(obj):
        state = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    elif hasattr(obj, "__dict__"):
        state = dict(vars(obj))
    elif hasattr(obj, "__slots__"):
        state = {k: getattr(obj, k) for k in obj.__slots__ if hasattr(obj, k)}
    if isinstance(obj, torch.optim.Optimizer):
        state = {"defaults": obj.defaults, "groups": [{k: v for k, v in g.items() if k != "params"}
                                                      for g in obj.param_groups], "extra": state.get("schedule")}
    return (type(obj).__qualname__, _fingerprint(state, seen, depth + 1))


def _has_contents(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def _build(config: Any, component: str) -> Any:
    for name, build in components(config):
        if name == component:
            if name == "training":
                return _training_objects(config)
            return build(config)
    raise AssertionError(component)


def _training_objects(config: Any) -> Any:
    from odkit.training.optimizers import build_optimizer
    from odkit.training.settings import train_settings

    opt, schedule = build_optimizer(config.train_config.optimizer, [torch.nn.Parameter(torch.zeros(1))])
    lrs = [schedule(s) if callable(schedule) else None for s in (0, 1, 10, 100, 1000, 10000, 100000)]
    return train_settings(config.train_config), opt, lrs


def _component_of(path: str) -> list[str]:
    if path.startswith("model."):
        return ["model (train)", "model (eval)", "train input"]
    if path.startswith("train_config."):
        return ["training", "train input"]
    if path.startswith("train_input_reader."):
        return ["train input"]
    if path.startswith("eval_input_reader"):
        return ["eval input 0"]
    if path.startswith("eval_config."):
        return ["evaluation"]
    return []


def _other_values(fd: FD, value: Any) -> list[Any]:
    """Non-default values to try: a small change, and a large one (min_depth only matters when large)."""
    if fd.type == FD.TYPE_BOOL:
        return [not value]
    if fd.type == FD.TYPE_ENUM:
        return [v.number for v in fd.enum_type.values if v.number != value][:2]
    if fd.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return [value * 0.5 if value else 0.25, value * 4 + 1.0]
    if fd.type == FD.TYPE_STRING:
        return [value + "x" if value else "x"]
    return [value + 1, value * 4 + 64]


def _set(config: Any, path: str, value: Any) -> None:
    msg = config
    parts = path.split(".")
    for part in parts[:-1]:
        msg = getattr(msg, part.split("[")[0])[int(part.split("[")[1][:-1])] if "[" in part else getattr(msg, part)
    setattr(msg, parts[-1], value)


def _changes(config: Any, leaf: str, new: Any, comps: list[str], baseline: dict[str, Any]) -> bool:
    """Does setting ``leaf`` to ``new`` change a built component (shapes and settings on the meta device;
    then, for initialisers, the weights of a CPU build with a fixed seed)? A refusal counts as a change."""
    variant = type(config)()
    variant.CopyFrom(config)
    try:
        _set(variant, leaf, new)
    except (TypeError, ValueError):
        return False
    for on_cpu in (False, True):
        for comp in comps:
            if on_cpu and not comp.startswith("model"):
                continue
            key = f"{comp} cpu" if on_cpu else comp
            try:
                with contextlib.ExitStack() as stack:
                    if not on_cpu:
                        stack.enter_context(without_weights())
                    if key not in baseline:
                        torch.manual_seed(0)
                        baseline[key] = _fingerprint(_build(config, comp))
                    torch.manual_seed(0)
                    got = _fingerprint(_build(variant, comp))
            except OdkitError:
                return True  # the new value is refused or invalid: the code looked at it
            if got != baseline[key]:
                return True
    return False


# Honoured scalars whose effect cannot show in what is built (each with its reason).
NOT_VISIBLE_IN_THE_BUILD: dict[str, str] = {}


@pytest.mark.parametrize("config_name", ["ssd_mobilenet_v2_fpnlite_128x128_demo.config"])
def test_each_honoured_scalar_changes_what_is_built(config_name: str) -> None:
    """Set each honoured scalar of the config to another value: the built object must change (or the new
    value be refused). A field that is read but changes nothing is a silent no-op (issue 17)."""
    config = load(BUILTIN / config_name)
    judged = verdicts(config, dry_build(config))
    baseline: dict[str, Any] = {}
    unchanged = []
    checked = 0
    for leaf, (kind, _reason, _r) in judged.items():
        if kind != "honoured" or leaf.endswith("]"):
            continue
        fd = _leaf_field(config, leaf)
        if fd is None or fd.type == FD.TYPE_MESSAGE:
            continue
        comps = [c for c in _component_of(leaf) if any(n == c for n, _ in components(config))]
        checked += 1
        if not any(_changes(config, leaf, new, comps, baseline) for new in _other_values(fd, _get(config, leaf))):
            unchanged.append(leaf)
    assert checked > 30
    bad = [u for u in unchanged if u not in NOT_VISIBLE_IN_THE_BUILD]
    assert bad == [], "\n".join(bad)


def _leaf_field(config: Any, path: str) -> FD | None:
    msg = config
    fd = None
    for part in path.split("."):
        name = part.split("[")[0]
        fd = msg.DESCRIPTOR.fields_by_name.get(name)
        if fd is None:
            return None
        value = getattr(msg, name)
        msg = value[int(part.split("[")[1][:-1])] if "[" in part else value
    return fd


def _get(config: Any, path: str) -> Any:
    msg = config
    for part in path.split("."):
        name = part.split("[")[0]
        value = getattr(msg, name)
        msg = value[int(part.split("[")[1][:-1])] if "[" in part else value
    return msg


def test_load_text_helper_still_works() -> None:
    assert load_text("", "e").ListFields() == []


# ---- odkit config explain -------------------------------------------------------------------------------


def test_explain_names_the_reading_code_default_and_doc(capsys: pytest.CaptureFixture[str]) -> None:
    from odkit.cli import main
    from odkit.errors import ConfigError
    from odkit.workflows.config_explain import explain

    e = explain("model.ssd.feature_extractor.fpn.min_level")
    assert e.verdict == "honoured" and e.default == "3"
    assert len(e.readers) == 1 and e.readers[0].startswith("src/odkit/config/validate.py:")
    assert e.readers[0].endswith("(pyramid_levels)")
    assert "minimum level" in e.doc and e.proto.startswith("src/odkit/protos/fpn.proto:")
    frcnn = explain("model.faster_rcnn.first_stage_max_proposals")  # built from the built-in Faster R-CNN
    assert any("faster_rcnn_builder.py" in r for r in frcnn.readers)
    assert explain("train_config.sync_replicas").verdict == "accepted"
    assert explain("eval_config.eval_master").verdict == "not read"
    assert explain("eval_input_reader.label_map_path").path == "eval_input_reader[0].label_map_path"
    with pytest.raises(ConfigError, match="Ssd has no field 'min_levl'"):
        explain("model.ssd.min_levl")
    assert main(["config", "explain", "train_config.batch_size"]) == 0
    out = capsys.readouterr().out
    assert "read by:" in out and "settings.py" in out


# ---- validation at the boundary (issue 17 item 2) -------------------------------------------------------


def _demo_text(old: str, new: str, count: int = 1) -> str:
    text = DEMO.read_text()
    assert old in text
    return text.replace(old, new, count)


def _line_of(text: str, needle: str, occurrence: int) -> int:
    """1-based line of the ``occurrence``-th (1-based) ``needle`` in ``text``."""
    at = -1
    for _ in range(occurrence):
        at = text.index(needle, at + 1)
    return text.count("\n", 0, at) + 1


@pytest.mark.parametrize("old,new,where,message", [
    # the FPN block is the second "min_level: 3" (the first is the anchor generator's): change both
    ("min_level: 3", "min_level: 1", "model.ssd.feature_extractor.fpn.min_level", "below level 2"),
    ("min_level: 3", "min_level: 6", "model.ssd.feature_extractor.fpn.min_level", "outside the backbone's levels 2..5"),
])
def test_pyramid_levels_outside_the_backbone_are_one_line_errors(tmp_path: Path, old: str, new: str, where: str,
                                                                  message: str) -> None:
    from odkit.errors import ConfigError

    path = tmp_path / "p.config"
    path.write_text(_demo_text(old, new, 2))
    with pytest.raises(ConfigError) as info:
        load(path)
    line = info.value.one_line()
    at = _line_of(DEMO.read_text(), old, 2)  # the FPN block's min_level
    assert line.startswith(f"{path}:{at}:9: ") and message in line and where in line, line


def test_anchor_levels_must_match_the_predictor_outputs(tmp_path: Path) -> None:
    from odkit.errors import ConfigError

    path = tmp_path / "p.config"
    path.write_text(_demo_text("max_level: 6", "max_level: 7"))  # the anchor generator's (first) max_level
    at = _line_of(DEMO.read_text(), "max_level: 6", 1)
    with pytest.raises(ConfigError, match=rf"p.config:{at}:9: anchor levels 3..7 differ from the feature pyramid's "
                                          r"levels 3..6"):
        load(path)
    mobilenet = load(REPO / "src" / "odkit" / "configs" / "ssd_mobilenet_v2_fpnlite_320x320_pets.config")
    mobilenet.model.ssd.feature_extractor.type = "ssd_mobilenet_v2_keras"
    mobilenet.model.ssd.feature_extractor.ClearField("fpn")
    mobilenet.model.ssd.anchor_generator.ssd_anchor_generator.num_layers = 5  # the extractor makes 6 maps
    from odkit.config.validate import problems

    [(path_parts, message)] = list(problems(mobilenet))
    assert ".".join(path_parts) == "model.ssd.anchor_generator.ssd_anchor_generator.num_layers"
    assert "num_layers 5 differs from the 6 feature maps" in message


def test_pyramid_levels_are_read_in_one_place_with_tf_defaults() -> None:
    """The fpn block's levels (proto defaults 3..7 when the block is set, as TF); without a block the
    extractor's TF defaults: 3..7 for SSD, 2..6 for Faster R-CNN."""
    from odkit.config.validate import pyramid_levels
    from odkit.protos import faster_rcnn_pb2, ssd_pb2

    fe = faster_rcnn_pb2.FasterRcnnFeatureExtractor(type="faster_rcnn_resnet50_fpn_keras")
    assert pyramid_levels(fe, "faster_rcnn") == (2, 6)
    fe.fpn.SetInParent()
    assert pyramid_levels(fe, "faster_rcnn") == (3, 7)  # TF: fpn.min_level / max_level proto defaults
    fe.fpn.min_level = 2
    assert pyramid_levels(fe, "faster_rcnn") == (2, 7)
    ssd = ssd_pb2.SsdFeatureExtractor(type="ssd_mobilenet_v2_fpn_keras")
    assert pyramid_levels(ssd, "ssd") == (3, 7)
    assert pyramid_levels(ssd_pb2.SsdFeatureExtractor(type="ssd_mobilenet_v2_keras"), "ssd") is None


# Fields the old registry only validated with Values(allowed=...): the code that reads them refuses them now.
@pytest.mark.parametrize("path,value", [
    ("model.ssd.explicit_background_class", True),
    ("model.ssd.feature_extractor.replace_preprocessor_with_placeholder", True),
    ("model.ssd.box_predictor.weight_shared_convolutional_box_predictor.use_dropout", True),
    ("train_config.bias_grad_multiplier", 0.5),
    ("train_config.fine_tune_checkpoint_type", "fine_tune"),
    ("train_input_reader.load_dense_pose", True),
    ("eval_config.save_graph", True),
])
def test_old_values_rules_are_refused_by_the_reading_code(path: str, value: Any) -> None:
    config = load(DEMO)
    _set(config, path, value)
    [finding] = check(config).unsupported
    assert (finding.path, finding.kind) == (path, "refused")


def test_bifpn_combine_method_is_refused_where_it_is_read() -> None:
    config = load(REPO / "src" / "odkit" / "configs" / "ssd_mobilenet_v2_fpnlite_320x320_pets.config")
    fe = config.model.ssd.feature_extractor
    fe.type = "ssd_efficientnet-b0_bifpn_keras"
    fe.ClearField("fpn")
    fe.bifpn.min_level, fe.bifpn.max_level, fe.bifpn.num_iterations, fe.bifpn.num_filters = 3, 7, 3, 64
    fe.bifpn.combine_method = "max"
    fe.depth_multiplier = 1.0
    fe.ClearField("use_depthwise")
    fe.ClearField("override_base_feature_extractor_hyperparams")
    config.model.ssd.anchor_generator.multiscale_anchor_generator.max_level = 7
    paths = {(f.path, f.kind) for f in check(config).unsupported}
    assert paths == {("model.ssd.feature_extractor.bifpn.combine_method", "refused")}, paths
