"""`odkit train` on the command line: flags, one-line errors (exit 2), refusal of unsupported fields."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_train_fakes import pipeline_text

from odkit.cli import main


def test_train_cli_module_does_not_import_torch() -> None:
    code = "import sys, odkit.cli.train_cmd; from odkit.cli import build_parser; build_parser('train'); " \
           "sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_missing_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["train", "--pipeline_config_path", str(tmp_path / "nope.config"), "--model_dir", str(tmp_path / "m")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("odkit train: error:") and "nope.config" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_unsupported_field_refused_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "p.config"
    cfg.write_text(pipeline_text(extra="bias_grad_multiplier: 2.0"))
    rc = main(["train", "--pipeline_config_path", str(cfg), "--model_dir", str(tmp_path / "m"), "--num_train_steps",
               "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "bias_grad_multiplier" in err and "--allow_unsupported" in err
    assert not (tmp_path / "m").exists()


def test_bad_flag_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--pipeline_config_path", "x", "--model_dir", "y", "--precision", "fp8"])
    assert exc.value.code == 2
    cfg = tmp_path / "p.config"
    cfg.write_text(pipeline_text())
    rc = main(["train", "--pipeline_config_path", str(cfg), "--model_dir", str(tmp_path / "m"), "--allow_unsupported",
               "--log_every_n", "0"])
    assert rc == 2 and "--log_every_n must be > 0" in capsys.readouterr().err
