"""Issue 18: every numbered item reproduced (each of these failed before the fix).

Item 2 (download extraction) and the pixel limit's unit test live in test_fileio.py; 6b's override
semantics also in test_config_overrides.py. The generated bad-input corpus is tests/corpus/.
"""

from __future__ import annotations

import json
import os
import resource
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from reliability_data import DEMO, jpeg, label_map_text, make_pets, make_voc, voc_xml, write_train_config
from test_train_fakes import loader_fn, model_fn, pipeline

from odkit import checkpoints as ck
from odkit.cli import main
from odkit.data.example import encode_detection_example
from odkit.data.tfrecord import masked_crc32c, write_records
from odkit.errors import DataError, OdkitError
from odkit.workflows.train import train

SECRET = "SENTINEL-7f3a9c-do-not-read"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc: int, err: str, *needles: str, warnings_ok: bool = False) -> None:
    """Exit 2 and exactly one stderr line (with ``warnings_ok``: plus per-item ``warning:`` lines before it)."""
    assert rc == 2, err
    lines = err.splitlines()
    if warnings_ok:
        lines = [ln for ln in lines if not ln.startswith("warning: ")]
    assert len(lines) == 1 and err.endswith("\n") and "Traceback" not in err, err
    assert "object at 0x" not in err, err
    for n in needles:
        assert n in err, err


def records_hold(pattern_dir: Path, text: str) -> bool:
    return any(text.encode() in p.read_bytes() for p in pattern_dir.rglob("*") if p.is_file())


def _secret_jpeg(path: Path) -> None:
    path.write_bytes(jpeg(color=(1, 2, 3)) + SECRET.encode())


def _fake_train(model_dir: Path, config, **kwargs):  # noqa: ANN001, ANN202
    kw = {"model_fn": model_fn(), "loader_fn": loader_fn, "allow_unsupported": True, "device": "cpu",
          "log_every_n": 2, "checkpoint_every_n": 3, "verbose": False}
    kw.update(kwargs)
    return train(model_dir=model_dir, config=config, **kw)


# ----------------------------------------------------------------------------------------- 1: VOC fallback


def test_1_voc_fallback_image_symlinked_out_of_the_dataset_is_refused(tmp_path, capsys):
    ds = make_voc(tmp_path / "voc")
    _secret_jpeg(tmp_path / "outside.jpg")
    (ds / "Annotations" / "leak.xml").write_text(voc_xml("does_not_exist.jpg", [("cat", 1, 1, 20, 20)]))
    os.symlink(tmp_path / "outside.jpg", ds / "JPEGImages" / "leak.jpg")  # the <xml stem>.jpg fallback
    out = tmp_path / "out"
    rc, _, err = run(["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path",
                      out / "x.record"], capsys)
    one_line_error(rc, err, "leak.jpg", "escapes the data folder")
    assert not out.exists() or not records_hold(out, SECRET)


# ----------------------------------------------------------------------------------------- 3: pets reads outside


def test_3_pets_trainval_entry_and_symlinked_xml_outside_are_refused(tmp_path, capsys):
    ds = make_pets(tmp_path / "pets")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "Abyssinian_7.xml").write_text(voc_xml("Abyssinian_1.jpg", [("cat", 1, 1, 20, 20)]))
    with open(ds / "annotations" / "trainval.txt", "a") as f:
        f.write("../../../../elsewhere/Abyssinian_7 1 1 1\n".replace("../../../../", "../../../"))
    out = tmp_path / "out"
    rc, _, err = run(["create-pet-tfrecord", "--data_dir", ds, "--output_dir", out, "--num_shards", "1",
                      "--label_map_path", ds / "label_map.pbtxt"], capsys)
    one_line_error(rc, err, "escapes the data folder")
    assert not out.exists() or not any(out.iterdir())

    ds2 = make_pets(tmp_path / "pets2")
    (elsewhere / "secret.xml").write_text(voc_xml("Bengal_1.jpg", [("dog", 1, 1, 20, 20)]).replace(
        "<folder>", f"<folder>{SECRET}"))
    os.remove(ds2 / "annotations" / "xmls" / "Bengal_1.xml")
    os.symlink(elsewhere / "secret.xml", ds2 / "annotations" / "xmls" / "Bengal_1.xml")
    rc, _, err = run(["create-pet-tfrecord", "--data_dir", ds2, "--output_dir", out, "--num_shards", "1",
                      "--label_map_path", ds2 / "label_map.pbtxt"], capsys)
    one_line_error(rc, err, "Bengal_1.xml", "escapes the data folder")
    assert not out.exists() or not any(out.iterdir())


# ----------------------------------------------------------------------------------------- 4 + 12: export_info


def _export_folder(d: Path, onnx_file: str, classes: list | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    info = {"formats": {"onnx": {"file": onnx_file}}, "outputs": ["detection_boxes", "detection_scores",
            "detection_classes", "num_detections"], "classes": classes or [{"id": 1, "name": "a"}]}
    (d / "export_info.json").write_text(json.dumps(info))
    return d


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "link.onnx"])
def test_4_export_info_names_files_inside_the_export_only(tmp_path, capsys, name):
    other = tmp_path / "other_model.onnx"
    other.write_text(SECRET)
    d = _export_folder(tmp_path / "exp", name)
    os.symlink(other, d / "link.onnx")
    img = tmp_path / "i.jpg"
    img.write_bytes(jpeg())
    rc, out, err = run(["predict", "--model", d, "--images", img, "--output_dir", tmp_path / "pred"], capsys)
    one_line_error(rc, err, "formats.onnx.file")
    assert SECRET not in out + err
    with pytest.raises(DataError, match="formats.onnx.file"):
        from odkit.inference.detector import Detector

        Detector(d)


def test_12_export_info_class_id_not_a_number(tmp_path, capsys):
    d = _export_folder(tmp_path / "exp", "model.onnx", classes=[{"id": "x", "name": "a"}])
    (d / "model.onnx").write_bytes(b"")
    img = tmp_path / "i.jpg"
    img.write_bytes(jpeg())
    rc, _, err = run(["predict", "--model", d, "--images", img, "--output_dir", tmp_path / "pred"], capsys)
    one_line_error(rc, err, "class id 'x'")


# ----------------------------------------------------------------------------------------- 5: zero boxes


def test_5_converters_refuse_zero_boxes_and_zero_examples(tmp_path, capsys):
    ds = make_voc(tmp_path / "voc")
    out = tmp_path / "out"
    (tmp_path / "empty.pbtxt").write_text("")
    (tmp_path / "other.pbtxt").write_text(label_map_text(["zebra", "yak"]))
    for lm in ("empty.pbtxt", "other.pbtxt"):
        rc, _, err = run(["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path", out / "x.record",
                          "--label_map_path", tmp_path / lm], capsys)
        assert rc == 2 and err.count("\n") == 1, err
        assert "0 boxes" in err or "label map" in err, err
        assert not out.exists() or list(out.iterdir()) == []
    for p in (ds / "JPEGImages").iterdir():  # every image unreadable: every one skipped
        p.write_bytes(b"not an image")
    rc, _, err = run(["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path", out / "x.record"],
                     capsys)
    one_line_error(rc, err, "no examples written", "4 corrupt_image", warnings_ok=True)
    assert not out.exists() or list(out.iterdir()) == []


def test_5_13_train_with_a_label_map_matching_nothing_fails_and_leaves_nothing(tmp_path, capsys):
    ds = make_pets(tmp_path / "pets", per_class=2)
    rec = tmp_path / "rec"
    assert run(["create-pet-tfrecord", "--data_dir", ds, "--output_dir", rec, "--num_shards", "1",
                "--label_map_path", ds / "label_map.pbtxt"], capsys)[0] == 0
    (tmp_path / "zoo.pbtxt").write_text(label_map_text(["zebra", "yak"]))
    cfg = write_train_config(tmp_path / "p.config", str(rec / "pet_faces_train.record-?????-of-00001"),
                             tmp_path / "zoo.pbtxt")
    model_dir = tmp_path / "model"
    rc, _, err = run(["train", "--pipeline_config_path", cfg, "--model_dir", model_dir, "--num_train_steps", "1",
                      "--num_workers", "0", "--device", "cpu"], capsys)
    one_line_error(rc, err, "0 boxes", "label_map_path")
    assert not model_dir.exists()  # no pipeline.config, no empty events file


def test_5_box_check_unit():
    from odkit.training.trainer import BoxCheck

    logs: list[str] = []
    check = BoxCheck(num_classes=3, num_batches=2)
    gt = {"classes": torch.tensor([[1, 0], [1, 0]]), "num_boxes": torch.tensor([1, 1])}
    check.add({"groundtruth": gt}, logs.append)
    check.add({"groundtruth": gt}, logs.append)
    assert check.done and logs and "2, 3" in logs[0]
    empty = BoxCheck(num_classes=3, num_batches=2)
    zero = {"classes": torch.zeros(2, 2, dtype=torch.long), "num_boxes": torch.tensor([0, 0])}
    empty.add({"groundtruth": zero}, logs.append)
    with pytest.raises(DataError, match="0 boxes"):
        empty.add({"groundtruth": zero}, logs.append)


# ----------------------------------------------------------------------------------------- 6


def test_6_val_fraction_nan_is_refused(tmp_path, capsys):
    ds = make_voc(tmp_path / "voc")
    for bad in ("nan", "inf", "-0.5", "1.0"):
        rc, _, err = run(["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path",
                          tmp_path / "o" / "x.record", "--val_fraction", bad], capsys)
        one_line_error(rc, err, "--val_fraction")
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_6_records_inspect_json_is_valid_json_with_nan_boxes(tmp_path, capsys):
    ex = encode_detection_example(jpeg(), format="jpeg", height=40, width=48, filename="a.jpg", source_id="a",
                                  boxes=np.array([[np.nan, 0.1, np.inf, 0.5]], np.float32), labels=[1],
                                  texts=["cat"])
    write_records(str(tmp_path / "r.record"), [ex])
    rc, out, err = run(["records", "inspect", tmp_path / "r.record", "--json"], capsys)
    assert rc == 0, err

    def no_constants(name: str) -> None:
        raise AssertionError(f"bare {name} in JSON output")

    row = json.loads(out.splitlines()[0], parse_constant=no_constants)
    assert row["boxes"] == [[None, pytest.approx(0.1), None, pytest.approx(0.5)]]


def test_6_unreadable_checkpoints_refuse_resume(tmp_path):
    res = _fake_train(tmp_path, pipeline(num_steps=6))
    assert [c.step for c in ck.list_checkpoints(tmp_path)] == [3, 6] and res.step == 6
    for c in ("ckpt-3", "ckpt-6"):
        (tmp_path / c / "meta.json").write_text("{not json")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(OdkitError, match=r"ckpt-3, ckpt-6 are unreadable.*restart at step 0"):
        _fake_train(tmp_path, pipeline(num_steps=9))
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before


def test_6b_override_through_unset_oneof_member_is_refused(capsys, tmp_path):
    ov = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate.total_steps=600"
    rc, _, err = run(["train", "--pipeline_config_path", DEMO, "--model_dir", tmp_path / "m", "--override", ov],
                     capsys)
    one_line_error(rc, err, "adam_optimizer set, not momentum_optimizer", "optimizer.momentum_optimizer={...}")
    assert not (tmp_path / "m").exists()
    rc, out, err = run(["config", "show", DEMO, "--override",
                        "train_config.optimizer={momentum_optimizer {momentum_optimizer_value: 0.8}}"], capsys)
    assert rc == 0 and "momentum_optimizer_value: 0.8" in out and "adam_optimizer" not in out, err


# ----------------------------------------------------------------------------------------- 7: pixel limit


def _huge_png(w: int, h: int) -> bytes:
    import zlib

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    raw = zlib.compress(b"".join(b"\x00" + b"\x00" * (3 * w) for _ in range(8)))  # a few rows suffice
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(
        b"IDAT", raw) + chunk(b"IEND", b"")


def test_7_decoded_pixel_limit_in_records_converters_and_predict(tmp_path, capsys):
    big = _huge_png(20000, 20000)
    from odkit.data.image_io import decode_image

    with pytest.raises(DataError, match="Mpx limit"):  # the input pipeline's decoder (records -> training)
        decode_image(big, where="train.record:offset 0")
    ds = make_voc(tmp_path / "voc")
    (ds / "JPEGImages" / "im0.jpg").write_bytes(big)
    rc, out, err = run(["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path",
                        tmp_path / "o" / "x.record", "--json"], capsys)
    assert rc == 0 and json.loads(out)["skipped"] == {"corrupt_image": 1} and "Mpx limit" in err
    from odkit.inference.images import open_image

    (tmp_path / "big.png").write_bytes(big)
    with pytest.raises(DataError, match="Mpx limit"):
        open_image(tmp_path / "big.png")


# ----------------------------------------------------------------------------------------- 8


def test_8_declared_record_length_beyond_the_file_is_one_line(tmp_path, capsys):
    length = struct.pack("<Q", 1 << 40)
    data = length + struct.pack("<I", masked_crc32c(length)) + b"\x00" * 64
    assert len(data) == 76
    (tmp_path / "huge.record").write_bytes(data)
    rc, _, err = run(["records", "inspect", tmp_path / "huge.record"], capsys)
    one_line_error(rc, err, "truncated record", "huge.record")


# ----------------------------------------------------------------------------------------- 9: output paths


def test_9_output_paths_that_are_files_dirs_or_unwritable(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    d = tmp_path / "adir"
    d.mkdir()
    ds = make_voc(tmp_path / "voc")
    pets = make_pets(tmp_path / "pets")
    cases = [
        (["train", "--pipeline_config_path", DEMO, "--model_dir", f], "--model_dir"),
        (["train", "--pipeline_config_path", DEMO, "--model_dir", f / "sub"], "--model_dir"),
        (["train", "--pipeline_config_path", DEMO, "--model_dir", "/proc/odkit"], "--model_dir"),
        (["eval", "--pipeline_config_path", DEMO, "--model_dir", f, "--checkpoint_dir", d], "--model_dir"),
        (["export", "--pipeline_config_path", DEMO, "--trained_checkpoint_dir", d, "--output_directory", f],
         "--output_directory"),
        (["records", "inspect", tmp_path, "--draw", "1", "--out", f], "--out"),
        (["records", "preview", "--pipeline_config_path", DEMO, "--out", d], "--out"),
        (["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path", d], "--output_path"),
        (["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path", f / "x.record"], "--output_path"),
        (["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path", tmp_path / "o" / "x.record",
          "--label_map_output_path", d], "--label_map_output_path"),
        (["create-pet-tfrecord", "--data_dir", pets, "--output_dir", f], "--output_dir"),
        (["create-pet-tfrecord", "--data_dir", pets, "--output_dir", "/proc/x"], "--output_dir"),
        (["download", "pets", "--dest", f], "--dest"),
        (["predict", "--model", d, "--images", f, "--output_dir", f], "--output_dir"),
    ]
    for argv, flag in cases:
        rc, _, err = run(argv, capsys)
        one_line_error(rc, err, flag)
    assert f.read_text() == "x" and list(d.iterdir()) == []


# ----------------------------------------------------------------------------------------- 10: config and flags


def test_10_config_values_and_flags(tmp_path, capsys):
    text = DEMO.read_text()
    bad = {
        "nan_lr": text.replace("learning_rate_base: ", "learning_rate_base: nan #", 1),
        "inf_lr": text.replace("learning_rate_base: ", "learning_rate_base: inf #", 1),
        "zero_resizer": text.replace("height: 128", "height: 0").replace("width: 128", "width: 0"),
        "levels": text.replace("max_level: 6", "max_level: 2", 1),
        "deep": "model {" * 20000 + "}" * 20000,
    }
    assert all(bad[k] != text for k in bad)
    for name, body in bad.items():
        p = tmp_path / f"{name}.config"
        p.write_text(body)
        rc, _, err = run(["train", "--pipeline_config_path", p, "--model_dir", tmp_path / "m"], capsys)
        one_line_error(rc, err, str(p))
        if name != "deep":
            assert f"{p}:" in err and err.split(f"{p}:")[1].split(":")[0].isdigit(), err  # file:line:col
    for flags, needle in ((["--device", "tpu:7"], "tpu:7"), (["--num_workers", "-3"], "--num_workers")):
        rc, _, err = run(["train", "--pipeline_config_path", DEMO, "--model_dir", tmp_path / "m", *flags], capsys)
        one_line_error(rc, err, needle)
    assert not (tmp_path / "m").exists()


def test_10_many_shards_are_written_within_the_open_files_limit(tmp_path, capsys):
    ds = make_voc(tmp_path / "voc")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        rc, _, err = run(["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path",
                          tmp_path / "o" / "x.record", "--num_shards", "1000"], capsys)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert rc == 0, err
    shards = sorted((tmp_path / "o").glob("x.record-*"))
    assert len(shards) == 1000 and sum(p.stat().st_size > 0 for p in shards) == 4
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".")]


def test_10_deeply_nested_json_files(tmp_path, capsys):
    deep = "[" * 100000 + "]" * 100000
    (tmp_path / "deep.json").write_text(deep)
    (tmp_path / "im").mkdir()
    rc, _, err = run(["create-tfrecord", "--format", "coco", "--annotations_file", tmp_path / "deep.json",
                      "--image_dir", tmp_path / "im", "--output_path", tmp_path / "o" / "x.record"], capsys)
    one_line_error(rc, err, "deep.json")
    rc, _, err = run(["eval-json", "--groundtruth", tmp_path / "deep.json", "--detections", tmp_path / "deep.json"],
                     capsys)
    one_line_error(rc, err, "deep.json")


# ----------------------------------------------------------------------------------------- 11: converters


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d.update(annotations=5), "'annotations' must be a list"),
    (lambda d: d.update(categories=5), "'categories' must be a list"),
    (lambda d: d["annotations"][0].update(image_id=[1]), "image_id"),
    (lambda d: d["images"][0].update(width="abc"), "image width 'abc'"),
])
def test_11_coco_structure(tmp_path, capsys, mutate, needle):
    (tmp_path / "im").mkdir()
    (tmp_path / "im" / "a.jpg").write_bytes(jpeg())
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 48, "height": 40}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}],
            "categories": [{"id": 1, "name": "cat"}]}
    mutate(data)
    (tmp_path / "c.json").write_text(json.dumps(data))
    rc, _, err = run(["create-tfrecord", "--format", "coco", "--annotations_file", tmp_path / "c.json",
                      "--image_dir", tmp_path / "im", "--output_path", tmp_path / "o" / "x.record"], capsys)
    one_line_error(rc, err, needle)


def test_11_voc_overflow_and_non_utf8_lists(tmp_path, capsys):
    ds = make_voc(tmp_path / "voc")
    (ds / "Annotations" / "im0.xml").write_text(voc_xml("im0.jpg", [("cat", 1, 1, 9, 9)], size_text=("1e400", "40")))
    rc, _, err = run(["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path",
                      tmp_path / "o" / "x.record"], capsys)
    one_line_error(rc, err, "size/width", "im0.xml")
    (tmp_path / "t.csv").write_bytes(b"filename,width,height,class,xmin,ymin,xmax,ymax\n\xff\xfe.jpg,1,1,a,0,0,1,1\n")
    rc, _, err = run(["create-tfrecord", "--format", "csv", "--csv_path", tmp_path / "t.csv", "--image_dir",
                      ds / "JPEGImages", "--output_path", tmp_path / "o" / "x.record"], capsys)
    one_line_error(rc, err, "not UTF-8")
    pets = make_pets(tmp_path / "pets")
    (pets / "annotations" / "trainval.txt").write_bytes(b"Abyssinian_1 1 1 1\n\xff\xfe\n")
    rc, _, err = run(["create-pet-tfrecord", "--data_dir", pets, "--output_dir", tmp_path / "po"], capsys)
    one_line_error(rc, err, "not UTF-8", "trainval.txt")
    assert not (tmp_path / "o").exists() and not (tmp_path / "po").exists()


# ----------------------------------------------------------------------------------------- 12: checkpoints


def test_12_one_byte_checkpoint_files(tmp_path):
    from odkit.training.finetune import read_source_state_dict

    (tmp_path / "w.pth").write_bytes(b"\x80")
    with pytest.raises(OdkitError, match="cannot read checkpoint") as ei:
        read_source_state_dict(str(tmp_path / "w.pth"))
    assert "object at 0x" not in str(ei.value) and "\n" not in str(ei.value)
    _fake_train(tmp_path / "m", pipeline(num_steps=3))
    (tmp_path / "m" / "ckpt-3" / "train_state.pt").write_bytes(b"\x80")
    with pytest.raises(OdkitError, match="cannot read training state") as ei:
        _fake_train(tmp_path / "m", pipeline(num_steps=6))
    assert "object at 0x" not in str(ei.value)


def test_12_crafted_optimizer_state_is_one_line(tmp_path):
    _fake_train(tmp_path, pipeline(num_steps=3))
    path = tmp_path / "ckpt-3" / "train_state.pt"
    state = torch.load(path, weights_only=True)
    state["optimizer"]["param_groups"] = [{"params": "not a list"}]
    torch.save(state, path)
    with pytest.raises(OdkitError, match="cannot resume the optimizer state"):
        _fake_train(tmp_path, pipeline(num_steps=6))


# ----------------------------------------------------------------------------------------- 13: half-written


def test_13_failed_create_tfrecord_leaves_nothing(tmp_path, capsys):
    ds = make_voc(tmp_path / "voc")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.record-00001-of-00002").mkdir()  # the IsADirectoryError case: a shard name taken by a folder
    rc, _, err = run(["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path", out / "x.record",
                      "--num_shards", "2"], capsys)
    one_line_error(rc, err, "is a folder")
    assert sorted(p.name for p in out.iterdir()) == ["x.record-00001-of-00002"]
    (out / "x.record-00001-of-00002").rmdir()
    (tmp_path / "zoo.pbtxt").write_text(label_map_text(["zebra"]))
    rc, _, err = run(["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path", out / "x.record",
                      "--val_fraction", "0.5", "--label_map_path", tmp_path / "zoo.pbtxt"], capsys)
    assert rc == 2 and list(out.iterdir()) == []  # no shards of either split, no label map, no temporaries


def test_13_stale_temporaries_of_a_dead_process_are_removed_by_the_next_run(tmp_path, capsys):
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    out = tmp_path / "out"
    out.mkdir()
    (out / f".x.record-00000-of-00001.tmp-{p.pid}").write_bytes(b"half")
    (out / f".label_map.pbtxt.tmp-{p.pid}").write_text("half")
    ds = make_voc(tmp_path / "voc")
    rc, _, err = run(["create-tfrecord", "--format", "voc", "--data_dir", ds, "--output_path", out / "x.record"],
                     capsys)
    assert rc == 0, err
    assert sorted(q.name for q in out.iterdir()) == ["label_map.pbtxt", "x.record-00000-of-00001"]
