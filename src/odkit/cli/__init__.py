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
import os
import sys
import traceback
from collections.abc import Sequence

from odkit.errors import OdkitError, current_input
from odkit.fileio import removing_created_dirs
from odkit.version import __version__

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
    what = {"train": "PyTorch", "serve": "the HTTP stack"}.get(extra, root)
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


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (the usage text is what --help is for)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = _OneLineParser(
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


# Flags naming a command's main input, in the order the last-resort handler looks for one.
_INPUT_FLAGS = ("pipeline_config_path", "annotations_file", "csv_path", "data_dir", "pattern", "paths", "path",
                "a", "model", "images", "groundtruth", "detections", "trained_checkpoint_dir", "checkpoint_dir",
                "model_dir", "dest", "dataset")
# Flags naming where a command writes.
_OUTPUT_FLAGS = ("model_dir", "output_directory", "output_dir", "output_path", "label_map_output_path", "out", "dest")
EXIT_BUG = 70  # EX_SOFTWARE: an odkit bug, not a user error (user errors exit 2)


def _input_of(args: argparse.Namespace | None) -> str | None:
    """The input being processed: the innermost one a library marked (``odkit.errors.processing``), else
    the command's main input flag."""
    inner = current_input()
    if inner:
        return inner
    for name in _INPUT_FLAGS:
        value = getattr(args, name, None) if args is not None else None
        if value:
            return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return None


def _debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    debug = os.environ.get("ODKIT_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    if "--debug" in argv:
        argv = [a for a in argv if a != "--debug"]
        debug = True
    return debug, argv


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. User errors: one line, exit 2. Anything unexpected: one line naming the command
    and the input, exit 70, the traceback only with ``--debug`` or ``ODKIT_DEBUG=1``."""
    argv = normalize_flag_spelling(sys.argv[1:] if argv is None else argv)
    debug, argv = _debug_requested(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    args: argparse.Namespace | None = None
    try:
        if command in TORCH_COMMANDS and importlib.util.find_spec("torch") is None:
            raise missing_extra_error(ModuleNotFoundError(name="torch"), command)  # type: ignore[misc]
        parser = build_parser(command)
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 0 if not argv else 2
        # a failed command leaves no folder it created (each command removes its own partial files)
        with removing_created_dirs(*(getattr(args, f, None) for f in _OUTPUT_FLAGS)):
            return int(args._run(args) or 0)
    except ModuleNotFoundError as exc:
        err = missing_extra_error(exc, command)
        if err is None:
            return _report_bug(exc, command, args, debug)
        print(f"odkit {command or ''}: error: {err.one_line()}".replace("  ", " "), file=sys.stderr)
        return err.exit_code
    except OdkitError as exc:
        if debug:
            traceback.print_exc()
        print(f"odkit {command or ''}: error: {exc.one_line()}".replace("  ", " "), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("odkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except SystemExit:
        raise
    except BaseException as exc:  # the last resort: never a bare traceback for a user
        return _report_bug(exc, command, args, debug)


def _report_bug(exc: BaseException, command: str | None, args: argparse.Namespace | None, debug: bool) -> int:
    """One line naming the command and the input; the traceback only with --debug / ODKIT_DEBUG=1."""
    if debug:
        traceback.print_exception(exc)
    what = _input_of(args)
    where = f" while processing {_one_line(what, 200)}" if what else ""
    print(f"odkit {command or ''}: internal error{where}: {type(exc).__name__}: {_one_line(exc)} "
          "-- this is a bug in odkit, please report it"
          + ("" if debug else " (rerun with --debug or ODKIT_DEBUG=1 for the traceback)"),
          file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":
    raise SystemExit(main())
