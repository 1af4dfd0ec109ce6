"""tf.Example codec, image decoding, and compatibility with records written by TensorFlow."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from odkit.cli import main
from odkit.data.example import decode_detection_example, encode_detection_example, encode_from
from odkit.data.image_io import decode_image, image_info, image_size, sniff_format
from odkit.data.tfrecord import write_records
from odkit.errors import DataError, UnsupportedError
from odkit.protos import example_pb2


def _img(fmt: str, mode: str = "RGB", size=(8, 6), **save) -> bytes:
    color = {"RGB": (200, 10, 30), "RGBA": (200, 10, 30, 255), "L": 128, "CMYK": (0, 255, 255, 0), "P": 1}[mode]
    im = Image.new(mode, size, color)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **save)
    return buf.getvalue()


def test_encode_decode_round_trip() -> None:
    img = _img("JPEG")
    boxes = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 1.0, 0.9]], np.float32)
    data = encode_detection_example(img, format="jpeg", height=6, width=8, filename="a.jpg", source_id="id7",
                                    boxes=boxes, labels=[3, 1], texts=["cat", "dog"], difficult=[0, 1],
                                    truncated=[1, 0], group_of=[0, 1], weights=[1.0, 0.5], view=["Frontal", "Left"])
    ex = decode_detection_example(data)
    assert ex.image == img and ex.format == "jpeg" and (ex.height, ex.width) == (6, 8)
    assert ex.filename == "a.jpg" and ex.source_id == "id7" and len(ex.sha256) == 64
    np.testing.assert_array_equal(ex.boxes, boxes)
    assert ex.labels.tolist() == [3, 1] and ex.texts == ["cat", "dog"]
    assert ex.difficult.tolist() == [0, 1] and ex.truncated.tolist() == [1, 0] and ex.group_of.tolist() == [0, 1]
    assert ex.weights.tolist() == [1.0, 0.5] and ex.view == ["Frontal", "Left"]
    again = decode_detection_example(encode_from(ex))
    assert again.image == ex.image and again.texts == ex.texts and again.view == ex.view
    np.testing.assert_array_equal(again.boxes, ex.boxes)
    assert again.weights.tolist() == ex.weights.tolist() and again.group_of.tolist() == ex.group_of.tolist()
    assert ex.select(np.array([False, True])).labels.tolist() == [1]
    # TF OD API key layout
    parsed = example_pb2.Example()
    parsed.ParseFromString(data)
    f = parsed.features.feature
    assert list(f["image/object/bbox/xmin"].float_list.value) == pytest.approx([0.2, 0.5])
    assert f["image/object/class/text"].bytes_list.value[1] == b"dog"


def test_defaults_and_label_map_lookup() -> None:
    from odkit.data.label_map import LabelMap

    data = encode_detection_example(b"\x89PNG\r\n\x1a\nxx", format="png", height=1, width=1,
                                    boxes=[[0, 0, 1, 1], [0, 0, 0.5, 0.5]], labels=[9, 9], texts=["b", "zzz"])
    ex = decode_detection_example(data)
    assert ex.weights.tolist() == [1.0, 1.0] and ex.difficult.tolist() == [0, 0]
    lm = LabelMap.from_names(["a", "b"])
    assert decode_detection_example(data, label_map=lm).labels.tolist() == [2, -1]


def test_bad_records_raise_clear_errors() -> None:
    with pytest.raises(DataError, match="rec 3: record is not a tf.Example"):
        decode_detection_example(b"\xff\xff\xff\xff", where="rec 3")
    with pytest.raises(DataError, match="no image/encoded"):
        decode_detection_example(example_pb2.Example().SerializeToString())
    data = encode_detection_example(b"x", format="jpeg", height=1, width=1)
    ex = example_pb2.Example()
    ex.ParseFromString(data)
    ex.features.feature["image/object/densepose/num"].int64_list.value.append(1)
    ex.features.feature["image/object/bbox/xmin"].float_list.value.append(0.5)
    with pytest.raises(UnsupportedError, match="image/object/densepose"):
        decode_detection_example(ex.SerializeToString())
    with pytest.raises(DataError, match="bbox coordinate lists differ"):
        decode_detection_example(ex.SerializeToString(), ignore_unsupported=True)


@pytest.mark.parametrize(
    ("fmt", "mode", "true_fmt"),
    [("JPEG", "RGB", "jpeg"), ("JPEG", "L", "jpeg"), ("JPEG", "CMYK", "jpeg"), ("PNG", "RGBA", "png"),
     ("PNG", "P", "png"), ("GIF", "P", "gif"), ("BMP", "RGB", "bmp")],
)
def test_decode_image_always_rgb(fmt: str, mode: str, true_fmt: str) -> None:
    data = _img(fmt, mode, size=(8, 6))
    assert sniff_format(data) == true_fmt
    t = decode_image(data)
    assert tuple(t.shape) == (3, 6, 8) and str(t.dtype) == "torch.uint8"
    assert image_size(data) == (6, 8)
    if mode == "RGB":
        assert abs(int(t[0, 3, 4]) - 200) <= 3 and int(t[1, 3, 4]) <= 16


def test_decode_image_applies_exif_orientation() -> None:
    im = Image.new("RGB", (8, 4), (0, 0, 255))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes())
    assert tuple(decode_image(buf.getvalue()).shape) == (3, 8, 4)
    assert image_size(buf.getvalue()) == (4, 8)  # stored size


def test_truncated_and_garbage_images() -> None:
    data = _img("JPEG", size=(64, 64), quality=95)
    with pytest.raises(DataError, match="t.jpg: (corrupt or truncated|cannot read)"):
        image_info(data[: len(data) // 2], where="t.jpg")
    with pytest.raises(DataError, match="g.jpg: cannot read image"):
        decode_image(b"not an image", where="g.jpg")


def test_tf_written_records_match_expected_json(compat_dir, capsys) -> None:
    """`odkit records inspect --json` on records written by TensorFlow 2.21 matches the expected JSON."""
    d = compat_dir / "tfrecords_tf"
    expected = json.loads((d / "pet_faces_tf.expected.json").read_text())["records"]
    rc = main(["records", "inspect", str(d / "pet_faces_tf.record-?????-of-00002"), "--json"])
    assert rc == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(got) == len(expected) == 13
    key = lambda r: (r["shard"], r["index_in_shard"])  # noqa: E731
    for g, e in zip(sorted(got, key=key), sorted(expected, key=key)):
        for k in ("filename", "height", "width", "format", "sha256", "labels", "texts", "shard", "index_in_shard"):
            assert g[k] == e[k], (e["filename"], k)
        assert len(g["boxes"]) == len(e["boxes_yxyx"])
        if e["boxes_yxyx"]:
            np.testing.assert_allclose(np.array(g["boxes"]), np.array(e["boxes_yxyx"]), atol=1e-6, rtol=0)


def test_tf_written_records_decode_to_images(compat_dir) -> None:
    from odkit.data.tfrecord import iter_records

    seen = 0
    for data in iter_records(str(compat_dir / "tfrecords_tf" / "pet_faces_tf.record-?????-of-00002")):
        ex = decode_detection_example(data)
        t = decode_image(ex.image)
        assert tuple(t.shape) == (3, ex.height, ex.width)  # GIF and PNG-in-.jpg too
        seen += 1
    assert seen == 13


def test_cli_reports_corrupt_record(tmp_path, capsys) -> None:
    p = tmp_path / "c.record"
    write_records(str(p), [b"\x01\x02garbage"])
    assert main(["records", "inspect", str(p)]) == 2
    assert "c.record:record 0 (offset 0): record is not a tf.Example" in capsys.readouterr().err
    assert main(["records", "inspect", str(p), "--skip_corrupt"]) == 0
    out = capsys.readouterr()
    assert "0 records in 1 file(s)" in out.out and "skipped 1" in out.out


def test_truncated_image_decode_fails_clearly() -> None:
    arr = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    with pytest.raises(DataError, match="r.record:offset 9: cannot decode image .*truncated"):
        decode_image(buf.getvalue()[: len(buf.getvalue()) // 2], where="r.record:offset 9")


def test_inspect_summary_and_draw(tmp_path, capsys) -> None:
    img = _img("PNG", size=(40, 20))
    recs = [encode_detection_example(img, format="png", height=20, width=40, filename=f"im{i}.png",
                                     boxes=[[0.1, 0.1, 0.9, 0.5]] * i, labels=[2] * i, texts=["dog"] * i)
            for i in range(3)]
    write_records(str(tmp_path / "d.record-00000-of-00001"), recs)
    out = tmp_path / "drawn"
    assert main(["records", "inspect", str(tmp_path / "d.record-?????-of-00001"), "--draw", "2", "--out",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 records in 1 file(s), 3 boxes, 1 images without boxes" in text
    assert "2 dog: 3" in text and "0.40-0.70:      3" in text  # sqrt(0.8 * 0.4) = 0.566
    files = sorted(os.listdir(out))
    assert files == ["0000_im0.jpg", "0001_im1.jpg"]
    drawn = np.asarray(Image.open(out / files[1]).convert("RGB"), dtype=np.int16)
    plain = np.asarray(Image.open(io.BytesIO(img)).convert("RGB"), dtype=np.int16)
    assert drawn.shape == (20, 40, 3) and np.abs(drawn - plain).max() > 50  # a box was drawn
