"""`odkit export`: checkpoint -> ONNX / TorchScript folder (exporter_main_v2.py flags)."""

from __future__ import annotations

import argparse
import sys

from odkit.cli.common import add_config_flags

# The odkit modules a command needs are imported inside its functions: loading a command module (to parse
# its flags, print --help or refuse a bad flag) must not import torch, and `odkit predict` must run without it
# (tests/test_train_cli.py, tests/test_predict.py).


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    p.set_defaults(command=command)
    p.add_argument("--input_type", default="image_tensor",
                   choices=("image_tensor", "float_image_tensor", "encoded_image_string_tensor"),
                   help="graph input: uint8 [B,H,W,3] (image_tensor) or float32 [B,H,W,3] pixels in 0..255")
    add_config_flags(p)
    p.add_argument("--trained_checkpoint_dir", required=True,
                   help="training model_dir (latest checkpoint) or D/ckpt-N; or a TF2 checkpoint: a zoo "
                   "checkpoint/ folder, a ckpt-N prefix or a saved_model/ folder")
    p.add_argument("--output_directory", required=True, help="export folder to write (replaced atomically)")
    p.add_argument("--formats", default="onnx,torchscript", help="comma list of onnx, torchscript (default both)")
    p.add_argument("--use_ema", action="store_true", help="export the moving-average weights (ema.safetensors)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--skip_verify", action="store_true",
                   help="do not compare the exported graphs with the eager model on test images")


def run(args: argparse.Namespace) -> int:
    from odkit.fileio import check_output_dir

    check_output_dir(args.output_directory, "--output_directory")
    from odkit.workflows.export import export_from_config

    result = export_from_config(
        args.pipeline_config_path, args.trained_checkpoint_dir, args.output_directory,
        input_type=args.input_type, formats=args.formats, opset=args.opset, use_ema=args.use_ema,
        overrides=args.override, config_overrides=args.config_override,
        allow_unsupported=args.allow_unsupported, verify=not args.skip_verify,
    )
    files = ", ".join(f["file"] for f in result.info["formats"].values())
    print(f"odkit export: wrote {result.output_dir} ({files}, export_info.json, label_map.pbtxt)", file=sys.stderr)
    return 0
