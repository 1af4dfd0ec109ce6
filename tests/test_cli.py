import subprocess
import sys

from odkit import __version__
from odkit.cli import main, normalize_flag_spelling


def test_version_flag(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert __version__ in capsys.readouterr().out


def test_dashed_flags_are_normalized():
    argv = ["train", "--pipeline-config-path", "a-b.config", "--model-dir=x-y", "-v"]
    assert normalize_flag_spelling(argv) == ["train", "--pipeline_config_path", "a-b.config", "--model_dir=x-y", "-v"]


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "odkit", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("train", "eval", "export", "predict", "demo", "create-pet-tfrecord", "config", "download"):
        assert cmd in out.stdout
