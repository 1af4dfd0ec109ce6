"""--override K=V and --config_override semantics."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odkit.cli.common import add_config_flags
from odkit.config import (
    apply_config_overrides,
    apply_overrides,
    diff,
    load,
    load_from_args,
    load_text,
    to_text,
)
from odkit.errors import ConfigError
from odkit.protos import pipeline_pb2

BASE = """
model { ssd { num_classes: 37
  image_resizer { keep_aspect_ratio_resizer { min_dimension: 600 max_dimension: 1024 } }
  post_processing { score_converter: SIGMOID } } }
train_config { batch_size: 8 fine_tune_checkpoint: "ckpt-0" optimizer { use_moving_average: false } }
train_input_reader { label_map_path: "a.pbtxt" tf_record_input_reader { input_path: "a-1" input_path: "a-2" } }
eval_input_reader { label_map_path: "e.pbtxt" tf_record_input_reader { input_path: "e-1" } }
"""


def cfg(*overrides: str) -> pipeline_pb2.TrainEvalPipelineConfig:
    config = load_text(BASE, "base.config")
    apply_overrides(config, overrides)
    return config


def test_scalars_typed_from_schema() -> None:
    c = cfg(
        "train_config.batch_size=2", "model.ssd.num_classes=3", "train_config.gradient_clipping_by_norm=0.5"
    )
    assert c.train_config.batch_size == 2 and c.model.ssd.num_classes == 3
    assert c.train_config.gradient_clipping_by_norm == pytest.approx(0.5)


def test_bool_enum_and_empty_string() -> None:
    c = cfg(
        "train_config.optimizer.use_moving_average=true",
        "model.ssd.post_processing.score_converter=SOFTMAX",
        "train_config.fine_tune_checkpoint=",
    )
    assert c.train_config.optimizer.use_moving_average is True
    assert c.model.ssd.post_processing.score_converter == c.model.ssd.post_processing.SOFTMAX
    assert c.train_config.HasField("fine_tune_checkpoint") and c.train_config.fine_tune_checkpoint == ""


def test_value_may_contain_equals_sign() -> None:
    assert cfg("train_config.fine_tune_checkpoint=a=b").train_config.fine_tune_checkpoint == "a=b"


def test_repeated_message_index_and_append() -> None:
    c = cfg("eval_input_reader.0.label_map_path=X", "eval_input_reader[1].label_map_path=Y")
    assert [r.label_map_path for r in c.eval_input_reader] == ["X", "Y"]
    with pytest.raises(
        ConfigError, match=r"^--override eval_input_reader.5.shuffle=false: index 5 is out of range"
    ):
        cfg("eval_input_reader.5.shuffle=false")


def test_repeated_scalar_replaced_or_indexed() -> None:
    c = cfg("train_input_reader.tf_record_input_reader.input_path=X")
    assert list(c.train_input_reader.tf_record_input_reader.input_path) == ["X"]
    c = cfg("train_input_reader.tf_record_input_reader.input_path.1=Y")
    assert list(c.train_input_reader.tf_record_input_reader.input_path) == ["a-1", "Y"]
    c = cfg("train_input_reader.tf_record_input_reader.input_path.2=Z")
    assert list(c.train_input_reader.tf_record_input_reader.input_path) == ["a-1", "a-2", "Z"]


def test_oneof_switch_through_an_unset_member_is_refused_naming_the_set_one() -> None:
    # issue 18 item 6b: this used to switch the resizer silently (every other field at its default)
    with pytest.raises(ConfigError, match="image_resizer has keep_aspect_ratio_resizer set, not fixed_shape_resizer"):
        cfg("model.ssd.image_resizer.fixed_shape_resizer.height=64")
    with pytest.raises(ConfigError, match="model has ssd set, not faster_rcnn"):
        cfg("model.faster_rcnn.num_classes=5")
    # the explicit switch: name the whole member
    c = cfg("model.ssd.image_resizer.fixed_shape_resizer={height: 64 width: 32}")
    resizer = c.model.ssd.image_resizer
    assert resizer.WhichOneof("image_resizer_oneof") == "fixed_shape_resizer"
    assert (resizer.fixed_shape_resizer.height, resizer.fixed_shape_resizer.width) == (64, 32)
    c = cfg("model={faster_rcnn {num_classes: 5}}")
    assert c.model.WhichOneof("model") == "faster_rcnn" and not c.model.HasField("ssd")
    # within the member that is set, paths work as before
    c = cfg("model.ssd.image_resizer.keep_aspect_ratio_resizer.min_dimension=300")
    assert c.model.ssd.image_resizer.keep_aspect_ratio_resizer.min_dimension == 300


def test_message_value_as_text() -> None:
    c = cfg("model.ssd.similarity_calculator.iou_similarity={}")
    assert c.model.ssd.similarity_calculator.WhichOneof("region_similarity") == "iou_similarity"
    c = cfg("model.ssd.image_resizer={ fixed_shape_resizer { height: 32 width: 48 } }")
    assert c.model.ssd.image_resizer.fixed_shape_resizer.width == 48
    assert not c.model.ssd.image_resizer.HasField("keep_aspect_ratio_resizer")


def test_map_field_by_key() -> None:
    c = cfg("eval_config.super_categories.animals=cat,dog")
    assert dict(c.eval_config.super_categories) == {"animals": "cat,dog"}


@pytest.mark.parametrize(
    "item, fragment",
    [
        ("train_config.batch_size", "expected KEY=VALUE"),
        ("train_config.batch_sise=2", "TrainConfig has no field 'batch_sise'; did you mean batch_size?"),
        ("nothing.at.all=1", "TrainEvalPipelineConfig has no field 'nothing'"),
        ("train_config.batch_size=big", "field batch_size is an integer: cannot read 'big'"),
        ("train_config.batch_size=-3", "out of range"),
        ("model.ssd.num_classes=1.5", "is an integer"),
        ("train_config.sync_replicas=yes", "expected true or false"),
        ("model.ssd.post_processing.score_converter=SIGMA", "is not one of IDENTITY, SIGMOID, SOFTMAX"),
        ("train_config.gradient_clipping_by_norm=abc", "is a number"),
        ("train_config.batch_size.x=1", "is a scalar field; nothing can follow it"),
        ("eval_input_reader.label_map_path=x", "expected an index"),
        ("eval_input_reader=x", "is a repeated message: add an index"),
        ("train_config..batch_size=1", "bad path"),
        ("model.ssd.image_resizer={ bogus: 1 }", "bad text for message image_resizer"),
        ("eval_config.super_categories=x", "is a map: add the key"),
    ],
)
def test_bad_overrides_name_the_override(item: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg(item)
    line = info.value.one_line()
    assert line.startswith(f"--override {item}: "), line
    assert fragment in line


def test_config_override_merges_like_exporter() -> None:
    c = load_text(BASE, "base.config")
    apply_config_overrides(c, ["model { ssd { num_classes: 2 } } train_config { batch_size: 1 }"])
    assert c.model.ssd.num_classes == 2 and c.train_config.batch_size == 1
    assert c.model.ssd.post_processing.score_converter == c.model.ssd.post_processing.SIGMOID  # kept
    with pytest.raises(ConfigError, match=r"^--config_override #1:1:16: .*no field named \"bogus\""):
        apply_config_overrides(c, ["train_config { bogus: 1 }"])


def test_load_applies_config_overrides_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "p.config"
    path.write_text(BASE)
    c = load(
        path, overrides=["train_config.batch_size=3"], config_overrides=["train_config { batch_size: 9 }"]
    )
    assert c.train_config.batch_size == 3


def test_load_from_args_uses_common_flags(tmp_path: Path) -> None:
    path = tmp_path / "p.config"
    path.write_text(BASE)
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(
        ["--pipeline_config_path", str(path), "--override", "model.ssd.num_classes=4",
         "--config_override", "train_config { batch_size: 16 }"]
    )  # fmt: skip
    c = load_from_args(args)
    assert c.model.ssd.num_classes == 4 and c.train_config.batch_size == 16
    assert (
        load_from_args(parser.parse_args(["--pipeline_config_path", str(path)])).train_config.batch_size == 8
    )


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(min_value=0, max_value=2**32 - 1),
    lr=st.floats(width=32, allow_nan=False, allow_infinity=False),
    path=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20),
    flag=st.booleans(),
)
def test_overridden_values_survive_text_round_trip(batch: int, lr: float, path: str, flag: bool) -> None:
    c = cfg(
        f"train_config.batch_size={batch}",
        f"train_config.gradient_clipping_by_norm={lr!r}",
        f"train_config.fine_tune_checkpoint={path}",
        f"train_config.sync_replicas={str(flag).lower()}",
    )
    assert c.train_config.batch_size == batch and c.train_config.fine_tune_checkpoint == path
    assert c.train_config.gradient_clipping_by_norm == lr and c.train_config.sync_replicas is flag
    again = load_text(to_text(c), "round-trip")
    assert again == c and diff(c, again) == []
