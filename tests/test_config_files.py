"""Every real TF OD API pipeline file validates, and `show` round-trips it."""

from __future__ import annotations

from pathlib import Path

import pytest

from odkit.cli import main
from odkit.config import load, load_text, to_text


def _config_files(compat_dir: Path) -> list[Path]:
    root = compat_dir / "tfod_configs"
    files = sorted(root.glob("*.config")) + sorted((root / "tf1").glob("*.config"))
    assert len(files) >= 40
    return files


def test_every_compat_config_validates(compat_dir: Path, capsys) -> None:
    files = _config_files(compat_dir)
    assert main(["config", "validate", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert out.count(": OK") == len(files)


def test_show_round_trips_every_compat_config(compat_dir: Path) -> None:
    for f in _config_files(compat_dir):
        config = load(f)
        assert config.HasField("model"), f
        text = to_text(config)
        again = load_text(text, "shown")
        assert again == config, f
        assert to_text(again) == text, f


def test_known_values_survive_parsing(compat_dir: Path) -> None:
    root = compat_dir / "tfod_configs"
    d0 = load(root / "ssd_efficientdet_d0_512x512_coco17_tpu-8.config")
    assert d0.model.ssd.feature_extractor.bifpn.num_filters == 64
    assert (
        d0.model.ssd.box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams.activation == 3
    )
    assert d0.model.ssd.image_resizer.WhichOneof("image_resizer_oneof") == "keep_aspect_ratio_resizer"
    frcnn = load(root / "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config")
    assert frcnn.model.WhichOneof("model") == "faster_rcnn"
    assert frcnn.model.faster_rcnn.first_stage_max_proposals > 0
    assert len(frcnn.eval_input_reader) == 1


def test_unquoted_placeholder_is_read_as_string_with_a_note(compat_dir: Path, capsys) -> None:
    f = compat_dir / "tfod_configs" / "centernet_hg104_512x512_coco17_tpu-8.config"
    assert load(f).train_config.fine_tune_checkpoint == "PATH_TO_BE_CONFIGURED"
    assert f"odkit: warning: {f}:116:25: unquoted PATH_TO_BE_CONFIGURED" in capsys.readouterr().err
    assert main(["config", "validate", str(f)]) == 0
    err = capsys.readouterr().err
    assert f"odkit config: note: {f}:116:25: unquoted PATH_TO_BE_CONFIGURED" in err


def test_show_prints_canonical_text_with_overrides(compat_dir: Path, capsys) -> None:
    f = compat_dir / "tfod_configs" / "ssd_mobilenet_v2_320x320_coco17_tpu-8.config"
    assert main(["config", "show", str(f), "--override", "model.ssd.num_classes=3"]) == 0
    out = capsys.readouterr().out
    assert "num_classes: 3\n" in out
    assert load_text(out).model.ssd.num_classes == 3


def test_packaged_configs_validate_and_round_trip() -> None:
    root = Path(__file__).resolve().parents[1] / "src" / "odkit" / "configs"
    files = sorted(root.glob("*.config"))
    if not files:
        pytest.skip("no packaged configs yet")
    for f in files:
        config = load(f)
        assert config.HasField("model") and config.HasField("train_config"), f
        assert load_text(to_text(config), "shown") == config, f
