"""``odkit config check`` / ``explain``: config support derived from the code that reads the config.

Design (issue 17 item 1). There is no hand-written table of supported fields. :func:`dry_build` hands a
read-tracking view of the config (:mod:`odkit.config.tracking`) to the real consumers, and builds without
running anything (no record opened, no weight downloaded, modules on torch's ``meta`` device):

* the model, in train and in eval mode (``odkit.builders.model_builder.build_model``);
* every input pipeline (``odkit.inputs.builder.input_spec``: the reader, the model's resizer, the
  augmentations and ``max_number_of_boxes`` of train_config);
* the training settings and the optimizer (``odkit.training.settings.train_settings``,
  ``odkit.training.optimizers.build_optimizer``);
* the evaluator settings (``odkit.evaluation.settings.eval_settings``);
* the exporter's resize (``odkit.export.resize.export_resizer``).

The run-time code reads the config through these same functions (the trainer through ``TrainSettings``,
the evaluator through ``EvalSettings``, the loaders through ``InputSpec``), so what the check sees read is
what a run honours. Every SET field is then one of:

* **refused**: the code raised ``UnsupportedError`` naming it (or a block above it);
* **accepted, no effect**: listed, with the reason, in :data:`odkit.config.support.ACCEPTED`;
* **honoured**: some consumer read it;
* **not read**: nothing read it, so odkit would silently ignore it: reported.

Adding support for a field is therefore only: read it in the builder that uses it (or refuse the values
you do not implement with ``odkit.config.tracking.refuse``). ``odkit config explain PATH`` shows who reads
a field, its default and its documentation.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message

from odkit.config.support import ACCEPTED
from odkit.config.tracking import ReadLog, track
from odkit.config.values import format_field, format_scalar, is_map, rule_key
from odkit.errors import OdkitError, UnsupportedError

__all__ = [
    "CheckResult",
    "Finding",
    "check",
    "dry_build",
    "require_supported",
]

NOT_READ = "not read by odkit: it would be ignored"


@dataclass(frozen=True)
class Finding:
    """One set field (or block): ``kind`` is ``refused``, ``not read`` or ``accepted``."""

    path: str
    value: str
    reason: str
    kind: str

    def __str__(self) -> str:
        if self.kind == "accepted":
            return f"{self.path} = {self.value}  (accepted, no effect: {self.reason})"
        if self.kind == "refused":
            return f"{self.path} = {self.value}  (refused: {self.reason})"
        if self.kind == "not checked":
            return f"{self.path} = {self.value}  (not checked: {self.reason})"
        return f"{self.path} = {self.value}  ({self.reason})"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "value": self.value, "reason": self.reason, "kind": self.kind}


@dataclass(frozen=True)
class Refusal:
    component: str
    path: str  # the error's `where` (a dotted config path when the refusing code had one)
    message: str


@dataclass
class DryBuild:
    log: ReadLog = field(default_factory=ReadLog)
    refusals: list[Refusal] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # other config errors met while building
    stopped: list[str] = field(default_factory=list)  # components whose build stopped at such an error
    notes: list[str] = field(default_factory=list)  # limits of one use of a config (e.g. export), not of a field


@dataclass
class CheckResult:
    findings: list[Finding]
    errors: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def unsupported(self) -> list[Finding]:
        return [f for f in self.findings if f.kind in ("refused", "not read")]

    @property
    def unchecked(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == "not checked"]

    @property
    def accepted(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == "accepted"]


def components(config: Message) -> Iterator[tuple[str, Callable[[Any], object]]]:
    """(name, build(view)) for every consumer of the config; each build reads through the view it is given."""
    if config.HasField("model"):
        from odkit.builders.model_builder import build_model

        yield "model (train)", lambda view: build_model(view.model, is_training=True)
        yield "model (eval)", lambda view: build_model(view.model, is_training=False)
    if config.HasField("train_input_reader"):
        from odkit.inputs.builder import input_spec

        yield "train input", lambda view: input_spec(view.train_input_reader, view.model, view.train_config,
                                                is_training=True)
    for i in range(len(config.eval_input_reader)):
        from odkit.inputs.builder import input_spec

        yield f"eval input {i}", lambda view, i=i: input_spec(view.eval_input_reader[i], view.model, None,
                                                        is_training=False)
    if config.HasField("train_config"):
        yield "training", _training
    if config.HasField("eval_config"):
        from odkit.evaluation.settings import eval_settings

        yield "evaluation", lambda view: eval_settings(view.eval_config)
    if config.HasField("model"):
        yield "export", _export


def _training(view: Any) -> object:
    import torch

    from odkit.training.optimizers import build_optimizer
    from odkit.training.settings import train_settings

    settings = train_settings(view.train_config)
    if view.train_config.optimizer.WhichOneof("optimizer"):
        build_optimizer(view.train_config.optimizer, [torch.nn.Parameter(torch.zeros(1))])
    return settings


def _export(view: Any) -> object:
    from odkit.evaluation.settings import eval_settings
    from odkit.export.resize import export_resizer
    from odkit.inputs.builder import resizer_for_model

    resizer = resizer_for_model(view.model)
    try:
        export_resizer(resizer)
    except UnsupportedError as exc:  # the model trains and evaluates; only its export has this limit
        raise ExportNote(exc.one_line()) from None
    return eval_settings(view.eval_config).keypoint_edges


class ExportNote(Exception):
    """A limit of exporting this config (not of one field): printed as a note."""


MAX_PASSES = 32


def dry_build(config: Message) -> DryBuild:
    """Build every consumer of ``config`` from a read-tracking view; nothing is run, read or downloaded.

    A build stops at its first refusal; the refused field is then cleared (in a copy) and that consumer
    is built again, so that every field behind a refusal is judged too (as the old per-field registry did).
    """
    out = DryBuild()
    with without_weights():
        _build_all(config, out)
    return out


@contextlib.contextmanager
def without_weights() -> Iterator[None]:
    """Build torch modules on the meta device, skipping weight initialisation (shapes only, fast)."""
    import torch

    with torch.device("meta"), _skip_in_place_on_meta():
        yield


def _skip_in_place_on_meta() -> Any:
    import torch
    from torch.overrides import TorchFunctionMode

    keep = {"requires_grad_", "resize_", "set_", "share_memory_"}

    class SkipInPlaceOnMeta(TorchFunctionMode):
        """In-place ops on meta tensors (weight initialisation: normal_, uniform_, ...) do nothing anyway;
        skipping them makes building a ResNet-152 on the meta device ~10x faster."""

        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            name = getattr(func, "__name__", "")
            if (name.endswith("_") and not name.startswith("_") and name not in keep and args
                    and isinstance(args[0], torch.Tensor) and args[0].is_meta):
                return args[0]
            return func(*args, **(kwargs or {}))

    return SkipInPlaceOnMeta()


def _build_all(config: Message, out: DryBuild) -> None:
    for name, build in components(config):
        work = type(config)()  # each consumer gets its own copy: refused fields are cleared in it
        work.CopyFrom(config)
        view = track(work, out.log)
        refused: set[str] = set()
        for _ in range(MAX_PASSES):
            try:
                build(view)
            except UnsupportedError as exc:
                where = exc.where or ""
                if any(_under(where, r) or _under(r, where) for r in refused):
                    break  # caused by a field cleared here, not by the user's config
                out.refusals.append(Refusal(name, where, exc.message + (f" ({exc.hint})" if exc.hint else "")))
                if where in refused or not _clear(work, where, exc.substitute):
                    break
                refused.add(where)
                continue
            except ExportNote as exc:
                out.notes.append(f"{name}: {exc}")
            except OdkitError as exc:
                if not refused:  # an error caused by clearing a refused field is not the user's
                    out.errors.append(f"{name}: {exc.one_line()}")
                    out.stopped.append(name)
            break


def _clear(config: Message, path: str, substitute: object = None) -> bool:
    """Clear the field at dotted ``path``, or set it to ``substitute`` (a list element of scalars is set to
    its type's default)."""
    msg: Any = config
    parts = path.split(".")
    for i, part in enumerate(parts):
        name, _, index = part.partition("[")
        fd = msg.DESCRIPTOR.fields_by_name.get(name) if isinstance(msg, Message) else None
        if fd is None:
            return False
        last = i == len(parts) - 1
        if index:
            try:
                k = int(index.rstrip("]"))
                container = getattr(msg, name)
                if not last:
                    msg = container[k]
                    continue
                if fd.type == FD.TYPE_MESSAGE:
                    container[k].Clear()
                else:
                    container[k] = type(container[k])()
            except (ValueError, IndexError):
                return False
            return True
        if last:
            if substitute is not None and fd.type != FD.TYPE_MESSAGE and not fd.is_repeated:
                setattr(msg, name, substitute)
            else:
                msg.ClearField(name)
            return True
        if fd.type != FD.TYPE_MESSAGE or fd.is_repeated or is_map(fd):
            return False
        msg = getattr(msg, name)
    return False


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")


def _read_paths(path: str) -> Iterator[str]:
    """``path`` and, for a list element or map entry, the whole field (reading a list reads every element)."""
    yield path
    if path.endswith("]"):
        yield path[: path.rindex("[")]


def _set_leaves(msg: Message, prefix: str = "") -> Iterator[tuple[str, FD, str]]:
    """(dotted path, field, value text) of every set scalar, list element, map and EMPTY set block."""
    for fd, value in msg.ListFields():
        path = prefix + fd.name
        if is_map(fd):
            yield path, fd, format_field(fd, value)
        elif fd.type == FD.TYPE_MESSAGE:
            items = list(value) if fd.is_repeated else [value]
            for i, item in enumerate(items):
                p = f"{path}[{i}]" if fd.is_repeated else path
                if item.ListFields():
                    yield from _set_leaves(item, p + ".")
                else:
                    yield p, fd, "{}"
        elif fd.is_repeated:
            for i, item in enumerate(value):
                yield f"{path}[{i}]", fd, format_scalar(fd, item)
        else:
            yield path, fd, format_scalar(fd, value)


def verdicts(config: Message, built: DryBuild) -> dict[str, tuple[str, str, Refusal | None]]:
    """Set leaf path -> (kind, reason, refusal): kind is honoured, accepted, refused or not read."""
    out: dict[str, tuple[str, str, Refusal | None]] = {}
    for leaf, fd, _value in _set_leaves(config):
        read = any(built.log.was_read(p) for p in _read_paths(leaf))
        # a refused field, or an unread field inside a refused block (what another consumer read inside a
        # refused block, e.g. the image_resizer of a refused meta-architecture, is still honoured there)
        refusal = next((r for r in built.refusals
                        if r.path and (leaf == r.path or (_under(leaf, r.path) and (leaf != r.path and not read)))),
                       None)
        stopped = next((c for c in built.stopped if any(_under(leaf, p) for p in _scope(c))), None)
        if refusal is not None:
            out[leaf] = ("refused", refusal.message, refusal)
        elif rule_key(fd) in ACCEPTED:
            out[leaf] = ("accepted", ACCEPTED[rule_key(fd)], None)
        elif read:
            out[leaf] = ("honoured", "", None)
        elif stopped is not None:
            out[leaf] = ("not checked", f"the {stopped} build stopped at the error above", None)
        else:
            out[leaf] = ("not read", NOT_READ, None)
    return out


def _scope(component: str) -> tuple[str, ...]:
    """The config paths a component reads (to tell "not read" from "not reached" after a build error)."""
    if component.startswith("model"):
        return ("model",)
    if component == "train input":
        return ("train_input_reader", "train_config.data_augmentation_options", "train_config.max_number_of_boxes")
    if component.startswith("eval input "):
        return (f"eval_input_reader[{component.rsplit(' ', 1)[1]}]",)
    if component == "training":
        return ("train_config",)
    if component == "evaluation":
        return ("eval_config",)
    return ()


def judge(config: Message, built: DryBuild) -> list[Finding]:
    """A finding per refusal (once) and per set field that is accepted without effect or not read."""
    findings: list[Finding] = []
    reported: set[str] = set()
    judged = verdicts(config, built)
    for leaf, _fd, value in _set_leaves(config):
        kind, reason, refusal = judged[leaf]
        if refusal is not None:
            if refusal.path not in reported:
                reported.add(refusal.path)
                shown = value if leaf == refusal.path else _value_at(config, refusal.path)
                findings.append(Finding(refusal.path, shown, refusal.message, "refused"))
        elif kind in ("accepted", "not read", "not checked"):
            findings.append(Finding(leaf, value, reason, kind))
    for r in built.refusals:  # refusals that name no set field (a default value the code cannot use)
        if r.path not in reported:
            reported.add(r.path)
            findings.append(Finding(r.path or r.component, "(default)", r.message, "refused"))
    return findings


def _value_at(config: Message, path: str) -> str:
    """The one-line text of the field or block at a dotted path (for a refusal of a whole block)."""
    from google.protobuf import text_format

    value: Any = config
    for part in path.split("."):
        name, _, index = part.partition("[")
        fd = value.DESCRIPTOR.fields_by_name.get(name) if isinstance(value, Message) else None
        if fd is None:
            return "..."
        value = getattr(value, name)
        if index:
            try:
                value = value[int(index.rstrip("]"))]
            except (ValueError, IndexError):
                return "..."
        elif fd.type != FD.TYPE_MESSAGE or fd.is_repeated:
            return format_field(fd, value)
    if isinstance(value, Message):
        body = text_format.MessageToString(value, as_one_line=True)
        if len(body) > 60:
            body = body[:57] + "..."
        return "{" + (f" {body} " if body else "") + "}"
    return str(value)


def check(config: Message) -> CheckResult:
    """Every set field of ``config`` that odkit refuses, does not read, or accepts without effect."""
    built = dry_build(config)
    return CheckResult(judge(config, built), built.errors, built.notes)


def require_supported(config: Message, allow_unsupported: bool = False, path: str | None = None) -> list[Finding]:
    """Raise UnsupportedError if ``config`` sets fields odkit refuses or does not read.

    With ``allow_unsupported`` a one-line warning goes to stderr instead and the list is returned.
    """
    problems = check(config).unsupported
    if not problems:
        return problems
    first = "; ".join(str(p) for p in problems[:3])
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    if allow_unsupported:
        print(f"odkit: warning: ignoring {len(problems)} config field(s) odkit does not honour: {first}{more}",
              file=sys.stderr)
        return problems
    target = path or "PIPELINE_CONFIG"
    raise UnsupportedError(
        f"{len(problems)} config field(s) are set that odkit does not honour: {first}{more}",
        where=path,
        hint=f"run `odkit config check {target}` for the full list, or pass --allow_unsupported to run anyway",
    )
