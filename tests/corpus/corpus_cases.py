"""The bad-input corpus (issue 18), generated: every case builds its inputs in a fresh tmp folder.

Each case is (command, category, a builder that writes the bad input under ``ws.root`` and returns the argv,
and optionally a text the one-line error must contain). ``python tests/corpus/corpus_cases.py`` lists the
cases with their counts per command and category; ``test_corpus.py`` runs them all in-process.

A sentinel file outside the data folders (``ws.outside``) is the target of every escape attempt (``..``,
absolute paths, symlinks); its content must never appear in any output.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reliability_data import DEMO, jpeg, label_map_text, make_pets, make_voc, voc_xml  # noqa: E402

SENTINEL = "SENTINEL-3be1c0-corpus-must-never-appear"


class Workspace:
    """A tmp root with ``data/`` (inputs), ``outside/`` (the sentinel) and ``out/`` (outputs, not created)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.outside = root / "outside"
        self.out = root / "out"
        self.data.mkdir()
        self.outside.mkdir()
        self.secret = self.outside / "secret.jpg"
        self.secret.write_bytes(jpeg(color=(1, 2, 3)) + SENTINEL.encode())
        (self.outside / "secret.txt").write_text(SENTINEL)
        (self.outside / "secret.xml").write_text(voc_xml(SENTINEL + ".jpg", [("cat", 1, 1, 9, 9)]))
        self.afile = root / "afile"
        self.afile.write_text("a file")

    def file(self, name: str, content: str | bytes) -> Path:
        p = self.data / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
        return p

    def config(self, mutate: Callable[[str], str | bytes] = lambda t: t, name: str = "pipeline.config") -> Path:
        text = DEMO.read_text()
        lm = self.file("label_map.pbtxt", label_map_text(["cat", "dog"]))
        text = text.replace('label_map_path: "label_map.pbtxt"', f'label_map_path: "{lm}"')
        text = text.replace("records/", f"{self.data}/records/")
        return self.file(name, mutate(text))

    def voc(self) -> Path:
        return make_voc(self.data / "voc")

    def pets(self) -> Path:
        return make_pets(self.data / "pets")

    def records(self, body: bytes, name: str = "bad.record") -> Path:
        return self.file(name, body)

    def export_dir(self, info: object, files: dict[str, bytes] | None = None, raw: str | None = None) -> Path:
        d = self.data / "exported"
        d.mkdir(parents=True, exist_ok=True)
        (d / "export_info.json").write_text(raw if raw is not None else json.dumps(info))
        for k, v in (files or {}).items():
            (d / k).write_bytes(v)
        return d

    def image(self) -> Path:
        return self.file("img.jpg", jpeg())


@dataclass
class Case:
    id: str
    command: str
    category: str
    build: Callable[[Workspace], list[object]]
    needle: str | None = None
    warnings_ok: bool = False


CASES: list[Case] = []


def case(id: str, command: str, category: str, needle: str | None = None, warnings_ok: bool = False):  # noqa: A002, ANN201
    def deco(fn: Callable[[Workspace], list[object]]) -> Callable[[Workspace], list[object]]:
        CASES.append(Case(id, command, category, fn, needle, warnings_ok))
        return fn
    return deco


# ------------------------------------------------------------------------------------------------ configs

def _sub(old: str, new: str, count: int = 1) -> Callable[[str], str]:
    def f(t: str) -> str:
        assert old in t, old
        return t.replace(old, new, count)
    return f


CONFIG_MUTATIONS: dict[str, Callable[[str], str | bytes]] = {
    "nan_learning_rate": _sub("learning_rate_base: .003", "learning_rate_base: nan"),
    "inf_learning_rate": _sub("learning_rate_base: .003", "learning_rate_base: inf"),
    "negative_learning_rate": _sub("learning_rate_base: .003", "learning_rate_base: -0.5"),
    "zero_size_resizer": _sub("height: 128", "height: 0"),
    "negative_width": _sub("width: 128", "width: -5"),
    "zero_batch_size": _sub("batch_size: 16", "batch_size: 0"),
    "min_level_above_max_level": _sub("max_level: 6", "max_level: 2"),
    "min_level_1": _sub("min_level: 3", "min_level: 1"),
    "zero_num_classes": _sub("num_classes: 4", "num_classes: 0"),
    "probability_above_1": _sub("random_horizontal_flip {", "random_horizontal_flip { probability: 1.5"),
    "misspelled_field": _sub("batch_size: 16", "batch_sise: 16"),
    "unbalanced_braces": lambda t: t + "\n}}}\n",
    "string_for_int": _sub("batch_size: 16", 'batch_size: "sixteen"'),
    "int_overflow": _sub("batch_size: 16", "batch_size: 99999999999999999999999"),
    "binary_file": lambda t: b"\x00\xff\xfe" * 100,
    "nested_20000_deep": lambda t: "model {" * 20000 + "}" * 20000,
    "unknown_enum": _sub("score_converter: SIGMOID", "score_converter: SOFTERMAX"),
    "top_level_extension": lambda t: t + "\n[google.internal.thing] { x: 1 }\n",
}


def _config_commands(ws: Workspace, cfg: Path) -> dict[str, list[object]]:
    ck = ws.data / "ckpt"
    ck.mkdir(exist_ok=True)
    return {
        "train": ["train", "--pipeline_config_path", cfg, "--model_dir", ws.out / "model"],
        "eval": ["eval", "--pipeline_config_path", cfg, "--model_dir", ws.out / "model", "--checkpoint_dir", ck,
                 "--run_once"],
        "export": ["export", "--pipeline_config_path", cfg, "--trained_checkpoint_dir", ck, "--output_directory",
                   ws.out / "exported"],
        "config validate": ["config", "validate", cfg],
        "records preview": ["records", "preview", "--pipeline_config_path", cfg, "--out", ws.out / "grid.png"],
    }


for _name, _mut in CONFIG_MUTATIONS.items():
    for _cmd in ("train", "eval", "export", "config validate", "records preview"):
        def _build(ws: Workspace, mut: Callable[[str], str | bytes] = _mut, cmd: str = _cmd) -> list[object]:
            return _config_commands(ws, ws.config(mut))[cmd]
        case(f"config-{_name}-{_cmd.replace(' ', '-')}", _cmd, "config", needle="pipeline.config")(_build)

for _cmd in ("train", "eval", "export", "config validate", "records preview"):
    def _missing(ws: Workspace, cmd: str = _cmd) -> list[object]:
        argv = _config_commands(ws, ws.config())[cmd]
        return [ws.data / "nope.config" if str(a).endswith("pipeline.config") else a for a in argv]
    case(f"config-missing-file-{_cmd.replace(' ', '-')}", _cmd, "config", needle="nope.config")(_missing)

    def _dir(ws: Workspace, cmd: str = _cmd) -> list[object]:
        argv = _config_commands(ws, ws.config())[cmd]
        return [ws.data if str(a).endswith("pipeline.config") else a for a in argv]
    case(f"config-is-a-folder-{_cmd.replace(' ', '-')}", _cmd, "config")(_dir)


@case("override-oneof-switch", "train", "config", needle="adam_optimizer set, not momentum_optimizer")
def _(ws: Workspace) -> list[object]:
    return ["train", "--pipeline_config_path", ws.config(), "--model_dir", ws.out / "m", "--override",
            "train_config.optimizer.momentum_optimizer.learning_rate.constant_learning_rate.learning_rate=0.1"]


@case("override-nan", "train", "config", needle="nan")
def _(ws: Workspace) -> list[object]:
    return ["train", "--pipeline_config_path", ws.config(), "--model_dir", ws.out / "m", "--override",
            "train_config.optimizer.adam_optimizer.learning_rate.cosine_decay_learning_rate.learning_rate_base=nan"]


@case("override-unknown-field", "export", "config", needle="no field")
def _(ws: Workspace) -> list[object]:
    return ["export", "--pipeline_config_path", ws.config(), "--trained_checkpoint_dir", ws.data,
            "--output_directory", ws.out / "e", "--override", "model.ssd.num_clases=3"]


@case("config-override-syntax", "eval", "config", needle="--config_override")
def _(ws: Workspace) -> list[object]:
    return ["eval", "--pipeline_config_path", ws.config(), "--model_dir", ws.out / "m", "--run_once",
            "--config_override", "model { ssd { num_classes: } }"]


@case("config-diff-bad-second", "config diff", "config", needle="b.config")
def _(ws: Workspace) -> list[object]:
    return ["config", "diff", ws.config(), ws.config(CONFIG_MUTATIONS["unbalanced_braces"], name="b.config")]


@case("config-show-nan", "config show", "config", needle="pipeline.config")
def _(ws: Workspace) -> list[object]:
    return ["config", "show", ws.config(CONFIG_MUTATIONS["nan_learning_rate"])]


@case("config-check-deep", "config check", "config", needle="pipeline.config")
def _(ws: Workspace) -> list[object]:
    return ["config", "check", ws.config(CONFIG_MUTATIONS["nested_20000_deep"])]


# ------------------------------------------------------------------------------------------------ flags

FLAG_CASES = {
    "device-tpu": (["--device", "tpu:7"], "tpu:7"),
    "device-garbage": (["--device", "gpu please"], "device"),
    "num-workers-negative": (["--num_workers", "-3"], "--num_workers"),
    "num-train-steps-negative": (["--num_train_steps", "-1"], "--num_train_steps"),
    "checkpoint-every-zero": (["--checkpoint_every_n", "0"], "--checkpoint_every_n"),
    "log-every-zero": (["--log_every_n", "0"], "--log_every_n"),
}
for _name, (_flags, _needle) in FLAG_CASES.items():
    def _flag(ws: Workspace, flags: list[str] = _flags) -> list[object]:
        return ["train", "--pipeline_config_path", ws.config(), "--model_dir", ws.out / "m", *flags]
    case(f"train-flag-{_name}", "train", "flags", needle=_needle)(_flag)


@case("eval-device-tpu", "eval", "flags", needle="tpu")
def _(ws: Workspace) -> list[object]:
    return ["eval", "--pipeline_config_path", ws.config(), "--model_dir", ws.out / "m", "--run_once",
            "--device", "tpu:7"]


@case("create-tfrecord-val-fraction-nan", "create-tfrecord", "flags", needle="--val_fraction")
def _(ws: Workspace) -> list[object]:
    return ["create-tfrecord", "--format", "voc", "--data_dir", ws.voc(), "--output_path", ws.out / "x.record",
            "--val_fraction", "nan"]


@case("create-tfrecord-val-fraction-one", "create-tfrecord", "flags", needle="--val_fraction")
def _(ws: Workspace) -> list[object]:
    return ["create-tfrecord", "--format", "voc", "--data_dir", ws.voc(), "--output_path", ws.out / "x.record",
            "--val_fraction", "1"]


@case("create-tfrecord-zero-shards", "create-tfrecord", "flags", needle="num_shards")
def _(ws: Workspace) -> list[object]:
    return ["create-tfrecord", "--format", "voc", "--data_dir", ws.voc(), "--output_path", ws.out / "x.record",
            "--num_shards", "0"]


@case("pets-negative-shards", "create-pet-tfrecord", "flags", needle="num_shards")
def _(ws: Workspace) -> list[object]:
    return ["create-pet-tfrecord", "--data_dir", ws.pets(), "--output_dir", ws.out, "--num_shards", "-2"]


@case("pets-faces-only-false", "create-pet-tfrecord", "flags", needle="faces_only")
def _(ws: Workspace) -> list[object]:
    return ["create-pet-tfrecord", "--data_dir", ws.pets(), "--output_dir", ws.out, "--faces_only", "false"]


@case("predict-min-score-nan", "predict", "flags", needle="--min_score")
def _(ws: Workspace) -> list[object]:
    return ["predict", "--model", ws.data, "--images", ws.image(), "--output_dir", ws.out, "--min_score", "nan"]


@case("predict-max-boxes-zero", "predict", "flags", needle="--max_boxes")
def _(ws: Workspace) -> list[object]:
    return ["predict", "--model", ws.data, "--images", ws.image(), "--output_dir", ws.out, "--max_boxes", "0"]


@case("create-tfrecord-int-flag-not-int", "create-tfrecord", "flags", needle="invalid int value")
def _(ws: Workspace) -> list[object]:
    return ["create-tfrecord", "--format", "voc", "--data_dir", ws.voc(), "--output_path", ws.out / "x.record",
            "--num_shards", "many"]


@case("create-tfrecord-coco-needs-annotations", "create-tfrecord", "flags", needle="--annotations_file")
def _(ws: Workspace) -> list[object]:
    return ["create-tfrecord", "--format", "coco", "--image_dir", ws.data, "--output_path", ws.out / "x.record"]


# ------------------------------------------------------------------------------------------------ output paths

def _out_variants(ws: Workspace) -> dict[str, Path]:
    d = ws.root / "adir"
    d.mkdir(exist_ok=True)
    (d / "keep.txt").write_text("keep")
    return {"is-a-file": ws.afile, "under-a-file": ws.afile / "sub", "proc": Path("/proc/odkit_out"), "dir": d}


OUTPUT_CASES: dict[str, tuple[str, Callable[[Workspace, Path], list[object]], tuple[str, ...]]] = {
    "train --model_dir": ("train", lambda ws, p: ["train", "--pipeline_config_path", ws.config(), "--model_dir", p],
                          ("is-a-file", "under-a-file", "proc")),
    "eval --model_dir": ("eval", lambda ws, p: ["eval", "--pipeline_config_path", ws.config(), "--model_dir", p,
                                                "--run_once"], ("is-a-file", "under-a-file")),
    "export --output_directory": ("export", lambda ws, p: [
        "export", "--pipeline_config_path", ws.config(), "--trained_checkpoint_dir", ws.data,
        "--output_directory", p], ("is-a-file", "under-a-file", "proc")),
    "predict --output_dir": ("predict", lambda ws, p: ["predict", "--model", ws.data, "--images", ws.image(),
                                                       "--output_dir", p], ("is-a-file", "under-a-file")),
    "records inspect --out": ("records inspect", lambda ws, p: [
        "records", "inspect", ws.records(b""), "--draw", "1", "--out", p], ("is-a-file", "under-a-file", "proc")),
    "records preview --out": ("records preview", lambda ws, p: [
        "records", "preview", "--pipeline_config_path", ws.config(), "--out", p], ("dir", "under-a-file", "proc")),
    "create-tfrecord --output_path": ("create-tfrecord", lambda ws, p: [
        "create-tfrecord", "--format", "voc", "--data_dir", ws.voc(), "--output_path", p],
        ("dir", "under-a-file", "proc")),
    "create-tfrecord --label_map_output_path": ("create-tfrecord", lambda ws, p: [
        "create-tfrecord", "--format", "voc", "--data_dir", ws.voc(), "--output_path", ws.out / "x.record",
        "--label_map_output_path", p], ("dir", "under-a-file", "proc")),
    "create-pet-tfrecord --output_dir": ("create-pet-tfrecord", lambda ws, p: [
        "create-pet-tfrecord", "--data_dir", ws.pets(), "--output_dir", p], ("is-a-file", "under-a-file", "proc")),
    "download --dest": ("download", lambda ws, p: ["download", "pets", "--dest", p, "--url_base",
                                                   "http://127.0.0.1:9/"], ("is-a-file", "under-a-file", "proc")),
}
for _label, (_cmd, _fn, _variants) in OUTPUT_CASES.items():
    _flag = _label.split()[-1]
    for _v in _variants:
        def _outcase(ws: Workspace, fn: Callable[[Workspace, Path], list[object]] = _fn, v: str = _v) -> list[object]:
            return fn(ws, _out_variants(ws)[v])
        case(f"output-{_label.replace(' ', '')}-{_v}", _cmd, "output path", needle=_flag)(_outcase)


# ------------------------------------------------------------------------------------------------ TFRecords

def _frame(data: bytes, length: int | None = None, bad_len_crc: bool = False, bad_data_crc: bool = False) -> bytes:
    from odkit.data.tfrecord import masked_crc32c

    n = struct.pack("<Q", len(data) if length is None else length)
    lc = masked_crc32c(n) ^ (1 if bad_len_crc else 0)
    dc = masked_crc32c(data) ^ (1 if bad_data_crc else 0)
    return n + struct.pack("<I", lc) + data + struct.pack("<I", dc)


def _example(**kw: object) -> bytes:
    from odkit.data.example import encode_detection_example

    args: dict[str, object] = dict(format="jpeg", height=40, width=48, filename="a.jpg", source_id="a",
                                   boxes=[[0.1, 0.1, 0.5, 0.5]], labels=[1], texts=["cat"])
    args.update(kw)
    import numpy as np

    args["boxes"] = np.asarray(args["boxes"], np.float32)
    return encode_detection_example(jpeg(), **args)  # type: ignore[arg-type]


RECORD_CASES: dict[str, tuple[Callable[[], bytes], str | None]] = {
    "huge-declared-length": (lambda: _frame(b"x" * 64, length=1 << 40), "truncated record"),
    "length-beyond-file": (lambda: _frame(b"x" * 64, length=1000), "truncated record"),
    "bad-length-crc": (lambda: _frame(_example(), bad_len_crc=True), "CRC mismatch"),
    "bad-data-crc": (lambda: _frame(_example(), bad_data_crc=True), "CRC mismatch"),
    "truncated-header": (lambda: _frame(_example())[:7], "truncated"),
    "truncated-data": (lambda: _frame(_example())[:-9], "truncated"),
    "text-file": (lambda: b"this is not a tfrecord file at all, just some text\n" * 3, None),
    "not-an-example": (lambda: _frame(b"\xff\xff\xff\xff garbage proto"), None),
    "second-record-bad": (lambda: _frame(_example()) + _frame(_example(), bad_data_crc=True), "CRC mismatch"),
    "feature-wrong-type": (lambda: _frame(_example(labels=[1]).replace(b"image/object/class/label",
                                                                        b"image/object/class/labex")), None),
}
for _name, (_body, _needle) in RECORD_CASES.items():
    def _rec(ws: Workspace, body: Callable[[], bytes] = _body) -> list[object]:
        return ["records", "inspect", ws.records(body())]
    case(f"records-{_name}", "records inspect", "tfrecord", needle=_needle)(_rec)


@case("records-no-match", "records inspect", "tfrecord", needle="no files match")
def _(ws: Workspace) -> list[object]:
    return ["records", "inspect", str(ws.data / "nothing-?????-of-00010")]


@case("records-limit-negative-and-corrupt", "records inspect", "tfrecord", needle="CRC")
def _(ws: Workspace) -> list[object]:
    return ["records", "inspect", ws.records(_frame(_example(), bad_len_crc=True)), "--json"]


# ------------------------------------------------------------------------------------------------ label maps

LABEL_MAPS: dict[str, tuple[str | bytes, str | None]] = {
    "syntax-error": ('item { id: 1 name: "cat" ', "label_map.pbtxt"),
    "id-zero": ('item { id: 0 name: "cat" }', "ids must be >= 1"),
    "duplicate-id": ('item { id: 1 name: "cat" } item { id: 1 name: "dog" }', None),
    "no-id": ('item { name: "cat" }', "no id"),
    "non-utf8": (b'item { id: 1 name: "\xff\xfe" }', None),
    "deep-nesting": ("item {" * 5000 + "}" * 5000, None),
    "empty": ("", None),
    "names-match-nothing": ('item { id: 1 name: "zebra" } item { id: 2 name: "yak" }', "0 boxes"),
    "unknown-field": ('item { id: 1 name: "cat" colour: "red" }', None),
}
for _name, (_text, _needle) in LABEL_MAPS.items():
    def _lm(ws: Workspace, text: str | bytes = _text) -> list[object]:
        return ["create-tfrecord", "--format", "voc", "--data_dir", ws.voc(), "--output_path", ws.out / "x.record",
                "--label_map_path", ws.file("label_map.pbtxt", text)]
    case(f"label-map-{_name}-create-tfrecord", "create-tfrecord", "label map", needle=_needle)(_lm)

    def _lm_pets(ws: Workspace, text: str | bytes = _text) -> list[object]:
        return ["create-pet-tfrecord", "--data_dir", ws.pets(), "--output_dir", ws.out, "--label_map_path",
                ws.file("label_map.pbtxt", text)]
    # every example is skipped (one warning line each) when the label map names no breed
    case(f"label-map-{_name}-pets", "create-pet-tfrecord", "label map",
         warnings_ok=_name in ("empty", "names-match-nothing"))(_lm_pets)


@case("label-map-missing", "create-tfrecord", "label map", needle="nope.pbtxt")
def _(ws: Workspace) -> list[object]:
    return ["create-tfrecord", "--format", "voc", "--data_dir", ws.voc(), "--output_path", ws.out / "x.record",
            "--label_map_path", ws.data / "nope.pbtxt"]


# ------------------------------------------------------------------------------------------------ VOC


def _voc_with(xml: str, name: str = "im0.xml") -> Callable[[Workspace], list[object]]:
    def build(ws: Workspace) -> list[object]:
        ds = ws.voc()
        (ds / "Annotations" / name).write_text(xml)
        return ["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path", ws.out / "x.record"]
    return build


XXE = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]>'
       "<annotation><filename>&x;</filename></annotation>")
VOC_CASES: dict[str, tuple[Callable[[Workspace], list[object]], str | None]] = {
    "malformed-xml": (_voc_with("<annotation><filename>im0.jpg</filename><object>"), "malformed XML"),
    "not-annotation-root": (_voc_with("<html></html>"), None),
    "width-1e400": (_voc_with(voc_xml("im0.jpg", [("cat", 1, 1, 9, 9)], size_text=("1e400", "40"))), "size/width"),
    "width-not-a-number": (_voc_with(voc_xml("im0.jpg", [("cat", 1, 1, 9, 9)], size_text=("wide", "40"))),
                           "size/width"),
    "box-nan-text": (_voc_with(voc_xml("im0.jpg", [("cat", 1, 1, 9, 9)]).replace("<xmin>1</xmin>", "<xmin>x</xmin>")),
                     "xmin"),
    "missing-bndbox-coordinate": (_voc_with(voc_xml("im0.jpg", [("cat", 1, 1, 9, 9)]).replace("<ymax>9</ymax>", "")),
                                  "ymax"),
    "filename-dotdot": (_voc_with(voc_xml("../../../outside/secret.jpg", [("cat", 1, 1, 9, 9)])), "escapes"),
    "filename-absolute": (lambda ws: _voc_with(voc_xml(str(ws.secret), [("cat", 1, 1, 9, 9)]))(ws), "absolute"),
    "billion-laughs": (_voc_with('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
                                 "<annotation><filename>&b;</filename></annotation>"), "unsafe XML"),
    "xxe": (lambda ws: _voc_with(XXE.format(secret=ws.outside / "secret.txt"))(ws), "unsafe XML"),
    "no-annotations": (lambda ws: ["create-tfrecord", "--format", "voc", "--data_dir", ws.data, "--output_path",
                                   ws.out / "x.record"], None),
    "data-dir-missing": (lambda ws: ["create-tfrecord", "--format", "voc", "--data_dir", ws.data / "nope",
                                     "--output_path", ws.out / "x.record"], "not found"),
}
for _name, (_build_fn, _needle) in VOC_CASES.items():
    case(f"voc-{_name}", "create-tfrecord", "voc", needle=_needle)(_build_fn)


@case("voc-fallback-symlink-out", "create-tfrecord", "voc", needle="escapes")
def _(ws: Workspace) -> list[object]:
    ds = ws.voc()
    (ds / "Annotations" / "leak.xml").write_text(voc_xml("does_not_exist.jpg", [("cat", 1, 1, 20, 20)]))
    os.symlink(ws.secret, ds / "JPEGImages" / "leak.jpg")
    return ["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path", ws.out / "x.record"]


@case("voc-filename-symlink-out", "create-tfrecord", "voc", needle="escapes")
def _(ws: Workspace) -> list[object]:
    ds = ws.voc()
    os.symlink(ws.secret, ds / "JPEGImages" / "link.jpg")
    (ds / "Annotations" / "im0.xml").write_text(voc_xml("link.jpg", [("cat", 1, 1, 20, 20)]))
    return ["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path", ws.out / "x.record"]


@case("voc-xml-symlink-out", "create-tfrecord", "voc", needle="escapes")
def _(ws: Workspace) -> list[object]:
    ds = ws.voc()
    os.symlink(ws.outside / "secret.xml", ds / "Annotations" / "zz.xml")
    return ["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path", ws.out / "x.record"]


@case("voc-every-image-corrupt", "create-tfrecord", "voc", needle="no examples written", warnings_ok=True)
def _(ws: Workspace) -> list[object]:
    ds = ws.voc()
    for p in (ds / "JPEGImages").iterdir():
        p.write_bytes(b"\xff\xd8\xff not really a jpeg")
    return ["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path", ws.out / "x.record"]


# ------------------------------------------------------------------------------------------------ COCO

def _coco(mutate: Callable[[dict], object], raw: str | None = None, needle: str | None = None) -> tuple[
        Callable[[Workspace], list[object]], str | None]:
    def build(ws: Workspace) -> list[object]:
        (ws.data / "im").mkdir(exist_ok=True)
        (ws.data / "im" / "a.jpg").write_bytes(jpeg())
        data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 48, "height": 40}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}],
                "categories": [{"id": 1, "name": "cat"}]}
        mutate(data)
        ann = ws.file("coco.json", raw if raw is not None else json.dumps(data))
        return ["create-tfrecord", "--format", "coco", "--annotations_file", ann, "--image_dir", ws.data / "im",
                "--output_path", ws.out / "x.record"]
    return build, needle


COCO_CASES = {
    "annotations-5": _coco(lambda d: d.update(annotations=5), needle="'annotations' must be a list"),
    "categories-5": _coco(lambda d: d.update(categories=5), needle="'categories' must be a list"),
    "image-id-list": _coco(lambda d: d["annotations"][0].update(image_id=[1]), needle="image_id"),
    "width-abc": _coco(lambda d: d["images"][0].update(width="abc"), needle="width"),
    "width-1e400": _coco(lambda d: d["images"][0].update(width=1e400), needle="width"),
    "bbox-strings": _coco(lambda d: d["annotations"][0].update(bbox=["a", "b", "c", "d"]), needle="bbox"),
    "bbox-3-values": _coco(lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), needle="bbox"),
    "unknown-category": _coco(lambda d: d["annotations"][0].update(category_id=99), needle="category_id"),
    "category-without-name": _coco(lambda d: d["categories"][0].pop("name"), needle="category"),
    "images-not-a-list": _coco(lambda d: d.update(images={"a": 1}), needle="images"),
    "file-name-escape": _coco(lambda d: d["images"][0].update(file_name="../outside/secret.jpg"), needle="escapes"),
    "file-name-absolute": _coco(lambda d: d["images"][0].update(file_name="/etc/passwd"), needle="absolute"),
    "malformed-json": _coco(lambda d: None, raw='{"images": [', needle="malformed JSON"),
    "deep-json": _coco(lambda d: None, raw="[" * 100000 + "]" * 100000, needle="coco.json"),
    "non-utf8": _coco(lambda d: None, raw="\udcff", needle=None),
    "every-class-unknown-to-label-map": _coco(lambda d: d["categories"].__setitem__(0, {"id": 1, "name": "x"}),
                                              needle=None),
}
for _name, (_build_fn, _needle) in COCO_CASES.items():
    if _name == "non-utf8":
        def _nonutf(ws: Workspace) -> list[object]:
            argv = COCO_CASES["malformed-json"][0](ws)
            (ws.data / "coco.json").write_bytes(b'{"images": ["\xff\xfe"]}')
            return argv
        case("coco-non-utf8", "create-tfrecord", "coco", needle="UTF-8")(_nonutf)
        continue
    if _name == "every-class-unknown-to-label-map":
        def _unknown(ws: Workspace) -> list[object]:
            argv = COCO_CASES["annotations-5"][0](ws)
            (ws.data / "coco.json").write_text(json.dumps({
                "images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "cat"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}]}))
            return [*argv, "--label_map_path", ws.file("lm.pbtxt", label_map_text(["zebra"]))]
        case("coco-label-map-matches-nothing", "create-tfrecord", "coco", needle="0 boxes")(_unknown)
        continue
    case(f"coco-{_name}", "create-tfrecord", "coco", needle=_needle)(_build_fn)


# ------------------------------------------------------------------------------------------------ CSV

CSV_HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
CSV_CASES: dict[str, tuple[str | bytes, str | None]] = {
    "missing-column": ("filename,width,height,class,xmin\na.jpg,48,40,cat,1\n", "lacks column"),
    "non-numeric-box": (CSV_HEADER + "a.jpg,48,40,cat,one,1,9,9\n", "non-numeric"),
    "overflow-width": (CSV_HEADER + "a.jpg,1e400,40,cat,1,1,9,9\n", "non-numeric"),
    "empty-filename": (CSV_HEADER + ",48,40,cat,1,1,9,9\n", "empty filename"),
    "empty-class": (CSV_HEADER + "a.jpg,48,40,,1,1,9,9\n", "empty class"),
    "non-utf8": (CSV_HEADER.encode() + b"\xff\xfe.jpg,48,40,cat,1,1,9,9\n", "not UTF-8"),
    "escape": (CSV_HEADER + "../outside/secret.jpg,48,40,cat,1,1,9,9\n", "escapes"),
    "absolute": (CSV_HEADER + "/etc/passwd,48,40,cat,1,1,9,9\n", "absolute"),
    "nul-byte": (CSV_HEADER + "a\x00.jpg,48,40,cat,1,1,9,9\n", None),
}
for _name, (_body, _needle) in CSV_CASES.items():
    def _csv(ws: Workspace, body: str | bytes = _body) -> list[object]:
        (ws.data / "im").mkdir(exist_ok=True)
        (ws.data / "im" / "a.jpg").write_bytes(jpeg())
        return ["create-tfrecord", "--format", "csv", "--csv_path", ws.file("t.csv", body), "--image_dir",
                ws.data / "im", "--output_path", ws.out / "x.record"]
    case(f"csv-{_name}", "create-tfrecord", "csv", needle=_needle)(_csv)


@case("csv-is-a-folder", "create-tfrecord", "csv")
def _(ws: Workspace) -> list[object]:
    return ["create-tfrecord", "--format", "csv", "--csv_path", ws.data, "--image_dir", ws.data,
            "--output_path", ws.out / "x.record"]


# ------------------------------------------------------------------------------------------------ pets

def _pets_with(edit: Callable[[Workspace, Path], object], needle: str | None = None) -> tuple[
        Callable[[Workspace], list[object]], str | None]:
    def build(ws: Workspace) -> list[object]:
        ds = ws.pets()
        edit(ws, ds)
        return ["create-pet-tfrecord", "--data_dir", ds, "--output_dir", ws.out, "--num_shards", "1",
                "--label_map_path", ds / "label_map.pbtxt"]
    return build, needle


def _append(ds: Path, line: str) -> None:
    with open(ds / "annotations" / "trainval.txt", "a") as f:
        f.write(line)


def _symlink_xml(ws: Workspace, ds: Path) -> None:
    os.remove(ds / "annotations" / "xmls" / "Bengal_1.xml")
    os.symlink(ws.outside / "secret.xml", ds / "annotations" / "xmls" / "Bengal_1.xml")


PETS_CASES = {
    "trainval-dotdot": _pets_with(lambda ws, ds: _append(ds, "../../../outside/secret 1 1 1\n"), "escapes"),
    "trainval-absolute": _pets_with(lambda ws, ds: _append(ds, f"{ws.outside}/secret 1 1 1\n"), "absolute"),
    "xml-symlink-out": _pets_with(_symlink_xml, "escapes"),
    "trainval-non-utf8": _pets_with(lambda ws, ds: (ds / "annotations" / "trainval.txt").write_bytes(b"\xff\xfe\n"),
                                    "not UTF-8"),
    "no-trainval": _pets_with(lambda ws, ds: os.remove(ds / "annotations" / "trainval.txt"), "trainval.txt"),
    "xml-malformed": _pets_with(lambda ws, ds: (ds / "annotations" / "xmls" / "Bengal_1.xml").write_text("<a"),
                                "malformed XML"),
    "image-filename-escape": _pets_with(lambda ws, ds: (ds / "annotations" / "xmls" / "Bengal_1.xml").write_text(
        voc_xml("../../outside/secret.jpg", [("dog", 1, 1, 9, 9)])), "escapes"),
    "every-image-missing": _pets_with(lambda ws, ds: [p.unlink() for p in (ds / "images").iterdir()],
                                      "no examples written"),
    "label-map-other-breeds": _pets_with(lambda ws, ds: (ds / "label_map.pbtxt").write_text(
        label_map_text(["Persian", "Sphynx"])), "no examples written"),
}
for _name, (_build_fn, _needle) in PETS_CASES.items():
    case(f"pets-{_name}", "create-pet-tfrecord", "pets", needle=_needle,
         warnings_ok=_name in ("every-image-missing", "label-map-other-breeds"))(_build_fn)


@case("pets-data-dir-is-a-file", "create-pet-tfrecord", "pets", needle="not found")
def _(ws: Workspace) -> list[object]:
    return ["create-pet-tfrecord", "--data_dir", ws.afile, "--output_dir", ws.out]


# ------------------------------------------------------------------------------------------------ exports

INFO_OK = {"formats": {"onnx": {"file": "model.onnx"}}, "outputs": ["detection_boxes", "detection_scores",
           "detection_classes", "num_detections"], "classes": [{"id": 1, "name": "a"}]}


def _info(**kw: object) -> dict:
    d = json.loads(json.dumps(INFO_OK))
    d.update(kw)
    return d


EXPORT_CASES: dict[str, tuple[Callable[[Workspace], Path], str | None]] = {
    "no-export-info": (lambda ws: ws.data, "export_info.json"),
    "export-info-bad-json": (lambda ws: ws.export_dir(None, raw="{"), "export_info.json"),
    "export-info-deep-json": (lambda ws: ws.export_dir(None, raw="[" * 100000 + "]" * 100000), "export_info.json"),
    "file-dotdot": (lambda ws: ws.export_dir(_info(formats={"onnx": {"file": "../../../../etc/passwd"}})),
                    "formats.onnx.file"),
    "file-absolute": (lambda ws: ws.export_dir(_info(formats={"onnx": {"file": str(ws.outside / "secret.txt")}})),
                      "formats.onnx.file"),
    "class-id-x": (lambda ws: ws.export_dir(_info(classes=[{"id": "x", "name": "a"}]), {"model.onnx": b""}),
                   "class id"),
    "outputs-missing": (lambda ws: ws.export_dir(_info(outputs=["detection_boxes"])), "outputs"),
    "model-file-missing": (lambda ws: ws.export_dir(INFO_OK), "missing"),
    "model-file-garbage": (lambda ws: ws.export_dir(INFO_OK, {"model.onnx": b"garbage" * 10}), None),
    "model-is-a-file": (lambda ws: ws.afile, None),
}
for _name, (_mk, _needle) in EXPORT_CASES.items():
    def _pred(ws: Workspace, mk: Callable[[Workspace], Path] = _mk) -> list[object]:
        return ["predict", "--model", mk(ws), "--images", ws.image(), "--output_dir", ws.out]
    case(f"predict-{_name}", "predict", "export folder", needle=_needle)(_pred)


@case("predict-file-symlink-out", "predict", "export folder", needle="formats.onnx.file")
def _(ws: Workspace) -> list[object]:
    d = ws.export_dir(_info(formats={"onnx": {"file": "link.onnx"}}))
    os.symlink(ws.outside / "secret.txt", d / "link.onnx")
    return ["predict", "--model", d, "--images", ws.image(), "--output_dir", ws.out]


@case("predict-no-images-match", "predict", "export folder")
def _(ws: Workspace) -> list[object]:
    return ["predict", "--model", ws.export_dir(INFO_OK), "--images", str(ws.data / "none*.jpg"), "--output_dir",
            ws.out]


# ------------------------------------------------------------------------------------------------ checkpoints

def _ckpt_dir(ws: Workspace, files: dict[str, bytes], meta: str | None = '{"step": 1, "complete": true}') -> Path:
    d = ws.data / "model" / "ckpt-1"
    d.mkdir(parents=True)
    for k, v in files.items():
        (d / k).write_bytes(v)
    if meta is not None:
        (d / "meta.json").write_text(meta)
    return d.parent


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned > /dev/null",))


CKPT_CASES: dict[str, tuple[str, Callable[[Workspace], list[object]], str | None]] = {
    "fine-tune-one-byte-pth": ("train", lambda ws: [
        "train", "--pipeline_config_path", ws.config(_sub("batch_size: 16", f'batch_size: 16 fine_tune_checkpoint: '
                                                                           f'"{ws.file("w.pth", b"x")}"')),
        "--model_dir", ws.out / "m", "--allow_unsupported"], "w.pth"),
    "fine-tune-pickle-code": ("train", lambda ws: [
        "train", "--pipeline_config_path", ws.config(_sub("batch_size: 16", f'batch_size: 16 fine_tune_checkpoint: '
                                                                           f'"{ws.file("e.pth", pickle.dumps(_Evil()))}"')),
        "--model_dir", ws.out / "m", "--allow_unsupported"], "e.pth"),
    "fine-tune-missing": ("train", lambda ws: [
        "train", "--pipeline_config_path", ws.config(_sub("batch_size: 16", f'batch_size: 16 fine_tune_checkpoint: '
                                                                           f'"{ws.data / "none.pth"}"')),
        "--model_dir", ws.out / "m", "--allow_unsupported"], "none.pth"),
    "export-no-checkpoint": ("export", lambda ws: [
        "export", "--pipeline_config_path", ws.config(), "--trained_checkpoint_dir", ws.data, "--output_directory",
        ws.out / "e"], "checkpoint"),
    "export-garbage-weights": ("export", lambda ws: [
        "export", "--pipeline_config_path", ws.config(), "--trained_checkpoint_dir",
        _ckpt_dir(ws, {"model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage"}), "--output_directory",
        ws.out / "e"], None),
    "export-one-byte-weights": ("export", lambda ws: [
        "export", "--pipeline_config_path", ws.config(), "--trained_checkpoint_dir",
        _ckpt_dir(ws, {"model.safetensors": b"x"}), "--output_directory", ws.out / "e"], None),
    "export-unreadable-meta": ("export", lambda ws: [
        "export", "--pipeline_config_path", ws.config(), "--trained_checkpoint_dir",
        _ckpt_dir(ws, {"model.safetensors": b"x"}, meta="{nope"), "--output_directory", ws.out / "e"],
        "checkpoint"),
    "eval-checkpoint-dir-is-a-file": ("eval", lambda ws: [
        "eval", "--pipeline_config_path", ws.config(), "--model_dir", ws.out / "m", "--checkpoint_dir", ws.afile,
        "--run_once"], None),
}
for _name, (_cmd, _fn, _needle) in CKPT_CASES.items():
    case(f"checkpoint-{_name}", _cmd, "checkpoint", needle=_needle)(_fn)


# ------------------------------------------------------------------------------------------------ eval-json

EVAL_JSON_CASES: dict[str, tuple[str, str, str | None]] = {
    "gt-malformed": ("{", "[]", "gt.json"),
    "gt-deep": ("[" * 100000 + "]" * 100000, "[]", "gt.json"),
    "gt-not-coco": ("[1, 2]", "[]", None),
    "dets-not-a-list": (json.dumps({"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1, "name": "a"}]}),
                        '{"a": 1}', None),
    "dets-bbox-nan": (json.dumps({"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1, "name": "a"}]}),
                      '[{"image_id": 1, "category_id": 1, "bbox": [NaN, 1, 1, 1], "score": 0.5}]', "bbox"),
    "dets-score-string": (json.dumps({"images": [{"id": 1}], "annotations": [],
                                      "categories": [{"id": 1, "name": "a"}]}),
                          '[{"image_id": 1, "category_id": 1, "bbox": [1, 1, 1, 1], "score": "high"}]', "score"),
    "gt-bbox-short": (json.dumps({"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
                                  "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1]}]}), "[]",
                      "bbox"),
    "dets-unknown-image": (json.dumps({"images": [{"id": 1}], "annotations": [],
                                       "categories": [{"id": 1, "name": "a"}]}),
                           '[{"image_id": 7, "category_id": 1, "bbox": [1, 1, 1, 1], "score": 0.5}]', None),
}
for _name, (_gt, _dets, _needle) in EVAL_JSON_CASES.items():
    def _ej(ws: Workspace, gt: str = _gt, dets: str = _dets) -> list[object]:
        return ["eval-json", "--groundtruth", ws.file("gt.json", gt), "--detections", ws.file("dets.json", dets)]
    case(f"eval-json-{_name}", "eval-json", "eval-json", needle=_needle)(_ej)


@case("eval-json-missing", "eval-json", "eval-json", needle="nope.json")
def _(ws: Workspace) -> list[object]:
    return ["eval-json", "--groundtruth", ws.data / "nope.json", "--detections", ws.data / "nope.json"]


# ------------------------------------------------------------------------------------------------ download

@case("download-server-unreachable", "download", "download")
def _(ws: Workspace) -> list[object]:
    return ["download", "pets", "--dest", ws.out, "--url_base", "http://127.0.0.1:9/", "--timeout", "2"]


def summary() -> str:
    by_cmd = Counter(c.command for c in CASES)
    by_cat = Counter(c.category for c in CASES)
    lines = [f"{len(CASES)} cases"]
    lines += [f"  command {k}: {v}" for k, v in sorted(by_cmd.items())]
    lines += [f"  category {k}: {v}" for k, v in sorted(by_cat.items())]
    return "\n".join(lines)


assert len({c.id for c in CASES}) == len(CASES), "duplicate case ids"

if __name__ == "__main__":
    print(summary())
