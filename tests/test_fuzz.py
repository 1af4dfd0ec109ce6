"""Property-based fuzzing (issue 18) of the four parsers that read untrusted bytes: the pipeline.config
parser (+ load-time validation), the TFRecord container reader, the tf.Example decoder and the label-map
parser. Any input gives a result or a one-line OdkitError, never another exception or a hang (each example
has a deadline). Example counts are bounded so the file runs in a few seconds; raise them locally with
``ODKIT_FUZZ_EXAMPLES=5000``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_data import DEMO, jpeg

from odkit.config.loader import parse_text
from odkit.config.validate import validate
from odkit.data.example import decode_detection_example, encode_detection_example
from odkit.data.label_map import parse_label_map
from odkit.data.tfrecord import TFRecordReader, frame_record, iter_records
from odkit.errors import OdkitError

N = int(os.environ.get("ODKIT_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=N, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow], derandomize="ODKIT_FUZZ_EXAMPLES" not in os.environ)

CONFIG = DEMO.read_text()
EXAMPLE = encode_detection_example(jpeg(), format="jpeg", height=40, width=48, filename="a.jpg", source_id="a",
                                   boxes=np.array([[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.9, 0.8]], np.float32),
                                   labels=[1, 2], texts=["cat", "dog"], difficult=[0, 1])
LABEL_MAP = 'item { id: 1 name: "cat" display_name: "Cat" }\nitem { id: 2 name: "dog" }\n'


def _one_line(exc: OdkitError) -> None:
    text = str(exc)
    assert "\n" not in text and text.strip(), repr(text)
    assert "object at 0x" not in text


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` with a few random byte edits: flips, deletions, insertions, truncation, duplication."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "duplicate"]))
        if not data:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "truncate":
            del data[i:]
        else:
            data[i:i] = data[i : i + draw(st.integers(1, 64))]
    return bytes(data)


TOKENS = ["{", "}", "<", ">", ":", "nan", "inf", "-1", "0", "1e400", '"', "'", "#", "[", "]", "model", "ssd",
          "train_config", "batch_size", "min_level", "max_level", "height", "\\", "\n", "\x00", "é", "item"]


@st.composite
def config_text(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.text(max_size=300))
    text = CONFIG
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 40)))
        text = text[:i] + draw(st.sampled_from(TOKENS)) + text[j:]
    return text


@FUZZ
@given(config_text())
def test_config_parser(text: str) -> None:
    try:
        config, _notes = parse_text(text, "fuzz.config")
        validate(config, text, "fuzz.config")
    except OdkitError as exc:
        _one_line(exc)


@FUZZ
@given(st.one_of(st.text(max_size=200), mutated(LABEL_MAP.encode()).map(lambda b: b.decode("utf-8", "replace"))))
def test_label_map_parser(text: str) -> None:
    try:
        lm = parse_label_map(text, "fuzz.pbtxt")
    except OdkitError as exc:
        _one_line(exc)
        return
    assert all(i >= 1 for i in lm.ids) and len(set(lm.ids)) == len(lm.ids)


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated(EXAMPLE)))
def test_example_decoder(data: bytes) -> None:
    try:
        ex = decode_detection_example(data, where="fuzz")
    except OdkitError as exc:
        _one_line(exc)
        return
    assert ex.boxes.shape == (len(ex.labels), 4)


@FUZZ
@given(st.one_of(st.binary(max_size=200), mutated(frame_record(EXAMPLE) + frame_record(b"second")),
                 st.integers(0, 2**64 - 1).map(lambda n: struct.pack("<Q", n) + b"\x00" * 20)))
def test_tfrecord_reader(tmp_path_factory, data: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "x.record"
    path.write_bytes(data)
    for read in (lambda: list(iter_records(str(path))), lambda: TFRecordReader(path).index(),
                 lambda: list(iter_records(str(path), skip_corrupt=True))):
        try:
            out = read()
        except OdkitError as exc:
            _one_line(exc)
            continue
        assert isinstance(out, list)
