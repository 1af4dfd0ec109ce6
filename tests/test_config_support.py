"""`odkit config check` (odkit.workflows.config_check), require_supported, diff and save."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from odkit.cli import main
from odkit.config import diff, load, load_text, save, to_text
from odkit.config.support import ACCEPTED
from odkit.errors import ConfigError, UnsupportedError
from odkit.workflows.config_check import Finding, check, require_supported

TEXT = """
model { ssd {
  num_classes: 3
  feature_extractor { type: "ssd_efficientnet-b0_bifpn_keras" }
  similarity_calculator { iou_similarity {} }
  post_processing { score_converter: SOFTMAX }
} }
train_config { batch_size: 4 }
eval_input_reader { label_map_path: "x.pbtxt" tf_record_input_reader { input_path: "a" input_path: "b" } }
"""


def test_accepted_keys_name_real_fields() -> None:
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    for key, reason in ACCEPTED.items():
        owner, _, name = key.rpartition(".")
        assert name in pool.FindMessageTypeByName("odkit.protos." + owner).fields_by_name, key
        assert reason


DEMO = Path(__file__).resolve().parents[1] / "src" / "odkit" / "configs" / "ssd_mobilenet_v2_fpnlite_128x128_demo.config"


def test_check_reports_each_unhonoured_set_field() -> None:
    config = load(DEMO)
    config.model.ssd.feature_extractor.type = "ssd_inception_v2"  # refused by the extractor factory
    config.eval_input_reader[0].load_dense_pose = True  # refused by the input builder
    config.eval_config.eval_master = "host"  # read by nothing
    got = {p.path: p for p in check(config).unsupported}
    assert set(got) == {
        "model.ssd.feature_extractor.type",
        "eval_input_reader[0].load_dense_pose",
        "eval_config.eval_master",
    }
    assert got["model.ssd.feature_extractor.type"].value == '"ssd_inception_v2"'
    assert "ssd_mobilenet_v2_keras" in got["model.ssd.feature_extractor.type"].reason
    assert got["eval_input_reader[0].load_dense_pose"].value == "true"
    assert got["eval_config.eval_master"].value == '"host"'
    assert got["eval_config.eval_master"].kind == "not read"


def test_read_fields_are_honoured_and_empty_config_is_fine() -> None:
    config = load(DEMO)
    config.model.ssd.similarity_calculator.iou_similarity.SetInParent()  # an empty block chooses behaviour
    config.model.ssd.post_processing.score_converter = 2  # SOFTMAX
    config.eval_input_reader[0].tf_record_input_reader.input_path.append("b")
    assert check(config).unsupported == []
    assert check(load_text("", "e")).findings == []


def test_unset_fields_are_never_reported() -> None:
    config = load_text("eval_config { eval_master: 'x' }", "t")
    assert [p.path for p in check(config).findings] == ["eval_config.eval_master"]


def test_unknown_model_and_graph_rewriter_are_reported() -> None:
    config = load_text(
        'model { experimental_model { name: "x" } } graph_rewriter { quantization { delay: 1 } }', "t"
    )
    problems = check(config).unsupported
    paths = [p.path for p in problems]
    assert paths == ["model.experimental_model", "graph_rewriter.quantization.delay"]
    assert all(isinstance(p, Finding) and p.reason for p in problems)
    assert problems[0].kind == "refused" and problems[1].kind == "not read"


def test_extension_inside_external_input_reader_is_refused_not_dropped() -> None:
    config = load_text(
        'train_input_reader { external_input_reader { [google.Reader.ext] { path: "x" } } }', "t"
    )
    assert config.train_input_reader.HasField("external_input_reader")
    [problem] = check(config).unsupported
    assert problem.path == "train_input_reader.external_input_reader"
    assert "tf_record_input_reader" in problem.reason


def test_require_supported(capsys) -> None:
    config = load_text('model { experimental_model { name: "x" } }', "t")
    with pytest.raises(UnsupportedError) as info:
        require_supported(config, allow_unsupported=False, path="p.config")
    line = info.value.one_line()
    assert line.startswith(
        "p.config: 1 config field(s) are set that odkit does not honour: model.experimental_model"
    )
    assert "odkit config check p.config" in line and "--allow_unsupported" in line
    assert [p.path for p in require_supported(config, allow_unsupported=True)] == ["model.experimental_model"]
    assert "warning: ignoring 1 config field" in capsys.readouterr().err
    assert require_supported(load_text("", "e")) == []


def test_check_cli_json_and_exit_codes(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.config"
    bad.write_text("graph_rewriter { quantization { delay: 1 } }\n")
    assert main(["config", "check", str(bad), "--json"]) == 3
    data = json.loads(capsys.readouterr().out)
    assert data["unsupported"][0]["path"] == "graph_rewriter.quantization.delay"
    assert set(data["unsupported"][0]) == {"path", "value", "reason", "kind"}
    empty = tmp_path / "empty.config"
    empty.write_text("")
    assert main(["config", "check", str(empty), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"unsupported": [], "accepted": [], "not_checked": [], "errors": [],
                                                   "notes": []}
    assert main(["config", "check", str(bad)]) == 3
    assert capsys.readouterr().out.startswith("graph_rewriter.quantization.delay = 1  (not read by odkit")


def test_diff_paths(tmp_path: Path, capsys) -> None:
    a = load_text('train_config { batch_size: 4 } eval_config { metrics_set: "coco_detection_metrics" }', "a")
    b = load_text("train_config { batch_size: 8 num_steps: 10 }", "b")
    assert [str(d) for d in diff(a, b)] == [
        "~ train_config.batch_size: 4 -> 8",
        '- eval_config.metrics_set[0]: "coco_detection_metrics"',
        "+ train_config.num_steps: 10",
    ]
    assert diff(a, a) == []
    pa, pb = tmp_path / "a.config", tmp_path / "b.config"
    save(a, pa)
    save(b, pb)
    assert main(["config", "diff", str(pa), str(pa)]) == 0
    assert main(["config", "diff", str(pa), str(pb)]) == 1
    assert "~ train_config.batch_size: 4 -> 8" in capsys.readouterr().out


def test_save_is_atomic_and_canonical(tmp_path: Path) -> None:
    config = load_text(TEXT, "t")
    path = tmp_path / "out.config"
    save(config, path)
    assert path.read_text() == to_text(config)
    assert load(path) == config
    assert [p.name for p in tmp_path.iterdir()] == ["out.config"]


def test_save_failure_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "out.config"
    path.write_text("train_config { batch_size: 1 }\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ConfigError, match=r"out.config: cannot write: disk full"):
        save(load_text("train_config { batch_size: 2 }", "t"), path)
    assert path.read_text() == "train_config { batch_size: 1 }\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.config"]
