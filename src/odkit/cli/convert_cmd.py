"""`odkit convert-checkpoint`: a TF2 Model Zoo / TF OD API checkpoint -> an odkit checkpoint folder."""

from __future__ import annotations

import argparse

from odkit.cli.common import add_config_flags

# The odkit modules a command needs are imported inside its functions: loading a command module (to parse
# its flags, print --help or refuse a bad flag) must not import torch, and `odkit predict` must run without it
# (tests/test_train_cli.py, tests/test_predict.py).


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    p.set_defaults(command=command)
    add_config_flags(p)
    p.add_argument("--tf_checkpoint", required=True,
                   help="a ckpt-N prefix (e.g. zoo/checkpoint/ckpt-0), a folder holding a TF `checkpoint` file, "
                   "or a saved_model/ folder")
    p.add_argument("--output_dir", required=True,
                   help="new folder to write (D/ckpt-0 + index + pipeline.config); must not exist or be empty")


def run(args: argparse.Namespace) -> int:
    from odkit.workflows.convert import convert_tf_checkpoint

    convert_tf_checkpoint(
        args.pipeline_config_path, args.tf_checkpoint, args.output_dir,
        overrides=args.override, config_overrides=args.config_override, allow_unsupported=args.allow_unsupported,
    )
    return 0
