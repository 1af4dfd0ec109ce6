"""StringIntLabelMap text files (``item { id name display_name keypoints { id label } }``), as in the TF OD
API's label_map_util.

Rules: ids >= 1 (id 0 is accepted only for an item named "background", which is ignored, as TF does),
ids unique, names unique (unless every item has a unique display_name, as in TF's mscoco_label_map). Violations raise ConfigError with ``file:line``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources

from google.protobuf import text_format

from odkit.data.tfrecord import open_file
from odkit.errors import ConfigError
from odkit.fileio import atomic_write_text
from odkit.protos import string_int_label_map_pb2 as slm_pb2

PETS_LABEL_MAP = "pet_label_map.pbtxt"


@dataclass(frozen=True)
class LabelMap:
    """Label map: 1-based ids, names, display names."""

    ids: tuple[int, ...]
    names: tuple[str, ...]
    display_names: tuple[str, ...]
    path: str | None = None
    # per item (aligned with ids): its ``keypoints { id label }`` as (id, label) pairs; () = none anywhere
    keypoints: tuple[tuple[tuple[int, str], ...], ...] = ()
    name_to_id: dict[str, int] = field(init=False, repr=False, compare=False)
    id_to_name: dict[int, str] = field(init=False, repr=False, compare=False)
    id_to_display_name: dict[int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n2i: dict[str, int] = {}
        for n, i in zip(self.names, self.ids):
            n2i.setdefault(n, i)  # first wins when names repeat (see parse_label_map)
        object.__setattr__(self, "name_to_id", n2i)
        object.__setattr__(self, "id_to_name", dict(zip(self.ids, self.names)))
        object.__setattr__(self, "id_to_display_name", dict(zip(self.ids, self.display_names)))

    @classmethod
    def from_names(cls, names: Iterable[str]) -> LabelMap:
        """Ids 1..N in the given order."""
        names = tuple(names)
        return cls(ids=tuple(range(1, len(names) + 1)), names=names, display_names=names)

    @property
    def num_classes(self) -> int:
        """The largest id (TF OD API num_classes convention)."""
        return max(self.ids, default=0)

    def __len__(self) -> int:
        return len(self.ids)

    def keypoints_of(self, class_id: int) -> tuple[tuple[int, str], ...]:
        """The (keypoint id, label) pairs of one class (label_map_util's keypoints), () if it names none."""
        if not self.keypoints:
            return ()
        return dict(zip(self.ids, self.keypoints)).get(class_id, ())

    def display_name_to_id(self) -> dict[str, int]:
        return dict(zip(self.display_names, self.ids))

    def get_dict(self, use_display_name: bool = False) -> dict[str, int]:
        """name -> id (label_map_util.get_label_map_dict)."""
        return self.display_name_to_id() if use_display_name else dict(self.name_to_id)

    @property
    def categories(self) -> list[dict[str, object]]:
        """COCO-style ``[{"id": 1, "name": display name}, ...]`` sorted by id (label_map_util)."""
        return [{"id": i, "name": self.id_to_display_name[i]} for i in sorted(self.ids)]

    def category_index(self) -> dict[int, dict[str, object]]:
        return {c["id"]: c for c in self.categories}  # type: ignore[misc]

    def to_proto(self) -> slm_pb2.StringIntLabelMap:
        msg = slm_pb2.StringIntLabelMap()
        for i, n, d in zip(self.ids, self.names, self.display_names):
            item = msg.item.add()
            item.id = i
            item.name = n
            if d != n:
                item.display_name = d
        for item, kp in zip(msg.item, self.keypoints):
            for kid, label in kp:
                item.keypoints.add(id=kid, label=label)
        return msg

    def to_text(self) -> str:
        parts = []
        kps = self.keypoints or ((),) * len(self.ids)
        for i, n, d, kp in zip(self.ids, self.names, self.display_names, kps):
            lines = [f"  id: {i}", f"  name: {_quote(n)}"]
            if d != n:
                lines.append(f"  display_name: {_quote(d)}")
            lines.extend(f"  keypoints {{\n    id: {kid}\n    label: {_quote(label)}\n  }}" for kid, label in kp)
            parts.append("item {\n" + "\n".join(lines) + "\n}\n")
        return "\n".join(parts)


def _quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _item_lines(text: str) -> list[dict[str, int]]:
    """For each top-level item: line numbers (1-based) of the item and its ``id`` / ``name`` fields."""
    tok = text_format.Tokenizer(text.splitlines(keepends=True))
    depth = 0
    items: list[dict[str, int]] = []
    prev = ""
    while not tok.AtEnd():
        t = tok.token
        line = tok._line + 1  # noqa: SLF001 - the tokenizer exposes no public line
        if t in ("{", "<"):
            depth += 1
            if depth == 1:
                items.append({"item": line})
        elif t in ("}", ">"):
            depth -= 1
        elif depth == 1 and t in ("id", "name", "display_name") and items and t not in items[-1]:
            items[-1][t] = line
        elif depth == 0 and t == "item" and prev != ":":
            pass
        prev = t
        tok.NextToken()
    return items


def parse_label_map(text: str, path: str = "<label map>") -> LabelMap:
    """Parse and validate label map text."""
    msg = slm_pb2.StringIntLabelMap()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        line, col = exc.GetLine(), exc.GetColumn()
        msg_text = str(exc)
        if line is not None and msg_text.startswith(f"{line}:{col} : "):
            msg_text = msg_text[len(f"{line}:{col} : "):]
        where_ = f"{path}:{line}:{col}" if line is not None else path
        raise ConfigError(f"bad label map text: {msg_text}", where=where_) from exc
    try:
        lines = _item_lines(text)
    except Exception:  # pragma: no cover - Parse succeeded, so the tokenizer will too
        lines = []

    def where(i: int, key: str = "item") -> str:
        if i < len(lines):
            return f"{path}:{lines[i].get(key, lines[i]['item'])}"
        return path

    ids: list[int] = []
    names: list[str] = []
    displays: list[str] = []
    keypoints: list[tuple[tuple[int, str], ...]] = []
    seen_ids: dict[int, int] = {}
    seen_names: dict[str, int] = {}
    # TF's own mscoco_label_map.pbtxt repeats name "NA" with distinct display names: accept duplicate
    # names when every item has a unique display_name (names then do not identify classes).
    all_displays = [it.display_name for it in msg.item if it.HasField("display_name")]
    displays_identify = len(all_displays) == len(msg.item) and len(set(all_displays)) == len(all_displays)
    for i, item in enumerate(msg.item):
        if not item.HasField("id"):
            raise ConfigError("label map item has no id", where=where(i))
        name = item.name if item.HasField("name") else item.display_name
        if item.id == 0 and "background" in (item.name, item.display_name):
            continue
        if item.id < 1:
            raise ConfigError(f"label map id {item.id} for {name!r}: ids must be >= 1 (0 is background)",
                              where=where(i, "id"))
        if not name:
            raise ConfigError(f"label map item id {item.id} has no name", where=where(i))
        if item.id in seen_ids:
            raise ConfigError(f"duplicate label map id {item.id} (also at line {seen_ids[item.id]})",
                              where=where(i, "id"))
        if name in seen_names and not displays_identify:
            raise ConfigError(f"duplicate label map name {name!r} (also at line {seen_names[name]})",
                              where=where(i, "name"))
        line_no = lines[i].get("id", lines[i]["item"]) if i < len(lines) else 0
        seen_ids[item.id] = line_no
        seen_names.setdefault(name, lines[i].get("name", lines[i]["item"]) if i < len(lines) else 0)
        ids.append(item.id)
        names.append(name)
        displays.append(item.display_name if item.HasField("display_name") else name)
        kp = tuple((int(k.id), k.label) for k in item.keypoints)
        if len({k for k, _ in kp}) != len(kp):
            raise ConfigError(f"label map item id {item.id} repeats a keypoint id", where=where(i))
        keypoints.append(kp)
    return LabelMap(ids=tuple(ids), names=tuple(names), display_names=tuple(displays), path=path,
                    keypoints=tuple(keypoints) if any(keypoints) else ())


def load_label_map(path: str | os.PathLike[str]) -> LabelMap:
    """Load and validate a ``label_map.pbtxt`` (local path or fsspec URL)."""
    path = os.fspath(path)
    try:
        if "://" in path:
            with open_file(path) as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except FileNotFoundError as exc:
        raise ConfigError("label map file not found", where=path) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read label map ({exc.strerror})", where=path) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"label map is not UTF-8 text (byte {exc.start})", where=path) from exc
    return parse_label_map(text, path)


def write_label_map(
    label_map: LabelMap | Mapping[str, int] | Iterable[str], path: str | os.PathLike[str]
) -> LabelMap:
    """Write a label map atomically. Accepts a LabelMap, a name->id dict or names (ids 1..N)."""
    if isinstance(label_map, LabelMap):
        lm = label_map
    elif isinstance(label_map, Mapping):
        items = sorted(label_map.items(), key=lambda kv: kv[1])
        lm = LabelMap(ids=tuple(i for _, i in items), names=tuple(n for n, _ in items),
                      display_names=tuple(n for n, _ in items))
    else:
        lm = LabelMap.from_names(label_map)
    text = lm.to_text()
    parse_label_map(text, os.fspath(path))  # validate before writing
    path = os.fspath(path)
    atomic_write_text(path, text)
    return LabelMap(lm.ids, lm.names, lm.display_names, path=path, keypoints=lm.keypoints)


def get_pets_label_map() -> LabelMap:
    """The 37-breed Oxford-IIIT Pet label map shipped with odkit (TF OD API's pet_label_map.pbtxt)."""
    ref = resources.files("odkit.data").joinpath(PETS_LABEL_MAP)
    return parse_label_map(ref.read_text(encoding="utf-8"), path=str(ref))


def pets_label_map_path() -> str:
    return str(resources.files("odkit.data").joinpath(PETS_LABEL_MAP))
