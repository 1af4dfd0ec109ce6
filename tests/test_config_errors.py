"""Malformed pipeline.config files: one `file:line:col: message` line on stderr, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from odkit.cli import main
from odkit.config import load, load_text
from odkit.errors import ConfigError

# name -> (file bytes, "line:col", substring of the message)
CASES: dict[str, tuple[bytes, str, str]] = {
    "unknown_top": (b"modell {\n}\n", "1:1", 'no field named "modell"'),
    "unknown_nested": (b"model {\n  ssd {\n    num_clases: 3\n  }\n}\n", "3:5", "did you mean num_classes?"),
    "bad_enum": (
        b"model { ssd { post_processing { score_converter: SIGMOIDD } } }\n",
        "1:50",
        "no value named SIGMOIDD",
    ),
    "enum_number": (
        b"model { ssd { post_processing { score_converter: 7 } } }\n",
        "1:50",
        "no value with number 7",
    ),
    "int_gets_string": (b'train_config {\n  batch_size: "eight"\n}\n', "2:15", "Couldn't parse integer"),
    "int_gets_float": (b"train_config {\n  batch_size: 8.5\n}\n", "2:15", "Couldn't parse integer: 8.5"),
    "negative_uint": (b"train_config { batch_size: -1 }\n", "1:28", "out of range"),
    "int_overflow": (b"model { ssd { num_classes: 99999999999 } }\n", "1:28", "out of range"),
    "bool_bad": (b"train_config {\n  sync_replicas: maybe\n}\n", "2:18", 'Expected "true" or "false"'),
    "float_gets_word": (
        b"train_config { gradient_clipping_by_norm: big }\n",
        "1:43",
        "Couldn't parse float: big",
    ),
    "unterminated_string": (
        b'train_config {\n  fine_tune_checkpoint: "abc\n}\n',
        "2:25",
        "missing ending quote",
    ),
    "missing_close_brace": (b"model {\n  ssd {\n    num_classes: 3\n  }\n", "4:3", 'Expected "}"'),
    "extra_close_brace": (b"model {\n}\n}\n", "3:1", "Expected identifier or number, got }"),
    "missing_colon": (b"train_config {\n  batch_size 8\n}\n", "2:14", 'Expected ":"'),
    "duplicate_singular": (
        b"train_config {\n  batch_size: 8\n  batch_size: 9\n}\n",
        "3:15",
        'multiple "batch_size"',
    ),
    "two_oneof_members": (b"model {\n  ssd {\n  }\n  faster_rcnn {\n  }\n}\n", "4:3", 'oneof "model"'),
    "scalar_as_message": (b"train_config {\n  batch_size {\n  }\n}\n", "2:14", 'Expected ":"'),
    "message_as_scalar": (b"model: 3\n", "1:8", 'Expected "{"'),
    "garbage_token": (b"train_config { batch_size: 8 } @@@\n", "1:32", "got @"),
    "field_in_wrong_message": (
        b"eval_config {\n  num_classes: 3\n}\n",
        "2:3",
        'no field named "num_classes"',
    ),
    "invalid_utf8": (
        b'train_config {\n  fine_tune_checkpoint: "\xff\xfe"\n}\n',
        "2:26",
        "not a UTF-8 text file",
    ),
    "binary_file": (b"\x00\x01\x02\x89PNG\r\n", "1:4", "not a UTF-8 text file"),
    "bad_list_element": (
        b"model { ssd { anchor_generator { ssd_anchor_generator { aspect_ratios: [1.0, x] } } } }\n",
        "1:78",
        "Couldn't parse float: x",
    ),
    "extension_on_plain_message": (
        b"train_config { [bad.ext.name] { } \n",
        "1:25",
        "does not have extensions",
    ),
    "top_level_extension": (
        b'model { ssd { } }\n# [not.this] {}\ntrain_config { fine_tune_checkpoint: "[x]" }\n  [google.ext] {\n a: 1 }\n',
        "4:3",
        "unknown extension [google.ext]: odkit cannot honour it",
    ),
    "unclosed_list": (b'eval_config { metrics_set: ["coco" }\n', "1:36", "Expected"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_config_gives_one_located_line(name: str, tmp_path: Path, capsys) -> None:
    data, position, fragment = CASES[name]
    path = tmp_path / f"{name}.config"
    path.write_bytes(data)
    assert main(["config", "validate", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"odkit config: error: {path}:{position}: "), lines[0]
    assert fragment in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""


def test_config_error_carries_where(tmp_path: Path) -> None:
    path = tmp_path / "p.config"
    path.write_text("train_config {\n  batch_size: x\n}\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.where == f"{path}:2:15"
    assert info.value.one_line().startswith(f"{path}:2:15: Couldn't parse integer")


def test_load_text_names_the_given_filename() -> None:
    with pytest.raises(ConfigError, match=r"^snippet:1:1: .*no field named \"bogus\""):
        load_text("bogus: 1\n", "snippet")


def test_missing_file_and_directory(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.config"
    assert main(["config", "show", str(missing)]) == 2
    assert (
        capsys.readouterr().err.strip() == f"odkit config: error: {missing}: file not found (check the path)"
    )
    assert main(["config", "show", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_validate_reports_each_file_and_fails_if_any_fails(tmp_path: Path, capsys) -> None:
    good = tmp_path / "good.config"
    good.write_text("train_config { batch_size: 4 }\n")
    bad = tmp_path / "bad.config"
    bad.write_text("train_config { batch_size: four }\n")
    assert main(["config", "validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == f"{good}: OK\n"
    assert captured.err.count("\n") == 1 and f"{bad}:1:28:" in captured.err


def test_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    path = tmp_path / "empty.config"
    path.write_text("# only a comment\n")
    assert load(path).ListFields() == []
