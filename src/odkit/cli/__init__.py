"""The `odkit` command line.

Each subcommand lives in a module under ``odkit.cli`` that exposes
``add_arguments(parser, command)`` and ``run(args) -> int`` (``args.command`` names the command). Modules are imported lazily, and must not
import torch at module level, so `odkit --help` is instant and `odkit predict` works where
torch is not installed.

Flags use the TF OD API's underscore spelling (``--pipeline_config_path``); the dashed spelling
(``--pipeline-config-path``) is accepted too.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from odkit import __version__
from odkit.errors import OdkitError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("odkit.cli.train_cmd", "train a model from a pipeline.config (model_main_tf2.py)"),
    "eval": ("odkit.cli.eval_cmd", "evaluate checkpoints with COCO / PASCAL metrics (model_main_tf2.py --checkpoint_dir)"),
    "eval-json": ("odkit.cli.eval_json_cmd", "COCO metrics from a COCO ground-truth JSON and a detections JSON"),
    "export": ("odkit.cli.export_cmd", "export a checkpoint to ONNX / TorchScript (exporter_main_v2.py)"),
    "convert-checkpoint": ("odkit.cli.convert_cmd", "TF2 Model Zoo / TF OD API checkpoint -> odkit checkpoint folder"),
    "predict": ("odkit.cli.predict_cmd", "run an exported model on images (onnxruntime or TorchScript)"),
    "demo": ("odkit.cli.demo_cmd", "the whole workflow end to end: data, records, train, eval, export, predict"),
    "create-pet-tfrecord": ("odkit.cli.data_cmd", "Oxford-IIIT Pet folder -> sharded TFRecords (create_pet_tf_record.py)"),
    "create-tfrecord": ("odkit.cli.data_cmd", "VOC / COCO / CSV dataset -> sharded TFRecords"),
    "records": ("odkit.cli.data_cmd", "inspect, draw and preview TFRecords"),
    "download": ("odkit.cli.data_cmd", "download a public dataset (pets)"),
    "config": ("odkit.cli.config_cmd", "validate, show, diff and check pipeline.config files"),
    "serve": ("odkit.cli.serve_cmd", "serve exported models over HTTP (TF Serving REST API + a web page)"),
}

# Top-level module -> the extra that installs it. The base install is the light runtime (no torch).
EXTRA_FOR_MODULE: dict[str, str] = {
    **dict.fromkeys(("torch", "torchvision", "safetensors", "tensorboard", "onnx", "matplotlib"), "train"),
    **dict.fromkeys(("starlette", "uvicorn", "multipart", "python_multipart", "anyio", "h11"), "serve"),
    "onnxscript": "export",
    "fsspec": "remote",
}


# Commands that cannot start without the `train` extra: refused up front, before they write anything.
TORCH_COMMANDS = ("train", "eval", "export", "demo")


def missing_extra_error(exc: ModuleNotFoundError, command: str | None) -> OdkitError | None:
    """A one-line error naming the extra to install when ``exc`` is a known optional dependency."""
    root = (exc.name or "").split(".")[0]
    extra = EXTRA_FOR_MODULE.get(root)
    if extra is None:
        return None
    what = {"train": "PyTorch (training, checkpoint evaluation, export)", "serve": "the HTTP stack"}.get(extra, root)
    return OdkitError(
        f"`odkit {command or ''}` needs {what}, which this install lacks (no module {root!r})",
        hint=f'pip install "odkit[{extra}]"',
    )


def normalize_flag_spelling(argv: Sequence[str]) -> list[str]:
    """Accept `--pipeline-config-path` as `--pipeline_config_path` (flag names only, not values)."""
    out: list[str] = []
    for tok in argv:
        if tok.startswith("--") and len(tok) > 2:
            name, eq, value = tok[2:].partition("=")
            tok = "--" + name.replace("-", "_") + eq + value
        out.append(tok)
    return out


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odkit",
        description="The TensorFlow Object Detection API workflow on PyTorch, without TensorFlow.",
    )
    parser.add_argument("--version", action="version", version=f"odkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            mod = importlib.import_module(module)
            mod.add_arguments(p, name)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = normalize_flag_spelling(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    try:
        if command in TORCH_COMMANDS and importlib.util.find_spec("torch") is None:
            raise missing_extra_error(ModuleNotFoundError(name="torch"), command)  # type: ignore[misc]
        parser = build_parser(command)
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 0 if not argv else 2
        return int(args._run(args) or 0)
    except ModuleNotFoundError as exc:
        err = missing_extra_error(exc, command)
        if err is None:
            raise
        print(f"odkit {command or ''}: error: {err.one_line()}".replace("  ", " "), file=sys.stderr)
        return err.exit_code
    except OdkitError as exc:
        print(f"odkit {command or ''}: error: {exc.one_line()}".replace("  ", " "), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("odkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
