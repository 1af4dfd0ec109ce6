"""odkit.protos: generated code is current, and real TF OD API files parse unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format

from odkit.protos import (
    center_net_pb2,
    eval_pb2,
    faster_rcnn_pb2,
    input_reader_pb2,
    pipeline_pb2,
    preprocessor_pb2,
    ssd_pb2,
    string_int_label_map_pb2,
    train_pb2,
)

REPO = Path(__file__).resolve().parents[1]


def test_generated_protos_are_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_protos.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_tf_od_api_proto_file_has_an_odkit_twin() -> None:
    names = {p.stem for p in (REPO / "src" / "odkit" / "protos").glob("*.proto")}
    expected = {
        "anchor_generator", "argmax_matcher", "bipartite_matcher", "box_coder", "box_predictor",
        "calibration", "center_net", "eval", "faster_rcnn", "faster_rcnn_box_coder",
        "flexible_grid_anchor_generator", "fpn", "graph_rewriter", "grid_anchor_generator",
        "hyperparams", "image_resizer", "input_reader", "keypoint_box_coder", "losses", "matcher",
        "mean_stddev_box_coder", "model", "multiscale_anchor_generator", "optimizer", "pipeline",
        "post_processing", "preprocessor", "region_similarity_calculator", "square_box_coder", "ssd",
        "ssd_anchor_generator", "string_int_label_map", "target_assigner", "train",
    }  # fmt: skip
    assert expected <= names


@pytest.mark.parametrize(
    "message, field, number",
    [
        (pipeline_pb2.TrainEvalPipelineConfig, "eval_input_reader", 5),
        (pipeline_pb2.TrainEvalPipelineConfig, "graph_rewriter", 6),
        (ssd_pb2.Ssd, "add_background_class", 21),
        (ssd_pb2.SsdFeatureExtractor, "bifpn", 19),
        (faster_rcnn_pb2.FasterRcnn, "second_stage_classification_loss", 29),
        (center_net_pb2.CenterNet, "deepmac_mask_estimation", 14),
        (train_pb2.TrainConfig, "fine_tune_checkpoint_type", 22),
        (input_reader_pb2.InputReader, "sample_1_of_n_examples", 22),
        (eval_pb2.EvalConfig, "batch_size", 25),
        (preprocessor_pb2.PreprocessingStep, "random_self_concat_image", 30),
    ],
)
def test_field_numbers_match_tf_od_api(message, field: str, number: int) -> None:
    assert message.DESCRIPTOR.fields_by_name[field].number == number


def test_defaults_match_tf_od_api() -> None:
    cfg = pipeline_pb2.TrainEvalPipelineConfig()
    assert cfg.train_config.batch_size == 32
    assert cfg.train_config.optimizer.use_moving_average is True
    assert cfg.model.faster_rcnn.first_stage_max_proposals == 300
    assert cfg.model.ssd.normalize_loss_by_num_matches is True
    assert cfg.model.ssd.feature_extractor.min_depth == 16
    assert abs(cfg.model.ssd.post_processing.batch_non_max_suppression.iou_threshold - 0.6) < 1e-7
    reader = input_reader_pb2.InputReader()
    assert reader.shuffle is True and reader.max_number_of_boxes == 100
    assert reader.mask_type == input_reader_pb2.NUMERICAL_MASKS
    assert eval_pb2.EvalConfig().retain_original_images is True
    assert (
        ssd_pb2.Ssd.DESCRIPTOR.fields_by_name["feature_extractor"]
        .message_type.oneofs_by_name["feature_pyramid_oneof"]
        .fields[0]
        .name
        == "fpn"
    )


def _config_files(compat_dir: Path) -> list[Path]:
    files = sorted((compat_dir / "tfod_configs").glob("*.config")) + sorted(
        (compat_dir / "tfod_configs" / "tf1").glob("*.config")
    )
    assert len(files) >= 40, "expected the TF OD API config collection"
    return files


def test_label_maps_parse(compat_dir: Path) -> None:
    files = sorted((compat_dir / "label_maps").glob("*.pbtxt"))
    assert files
    for f in files:
        lm = text_format.Parse(f.read_text(encoding="utf-8"), string_int_label_map_pb2.StringIntLabelMap())
        assert len(lm.item) > 0, f
        assert all(item.id > 0 or item.name for item in lm.item), f
    pets = text_format.Parse(
        (compat_dir / "label_maps" / "pet_label_map.pbtxt").read_text(),
        string_int_label_map_pb2.StringIntLabelMap(),
    )
    assert len(pets.item) == 37 and pets.item[0].id == 1
