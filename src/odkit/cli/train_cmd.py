"""`odkit train`: train a model from a pipeline.config (model_main_tf2.py without --checkpoint_dir).

Runs on one process, or on several with `torchrun --nproc_per_node N -m odkit train ...`.
Running the same command again resumes from the latest checkpoint in --model_dir.
"""

from __future__ import annotations

import argparse

from odkit.cli.common import add_config_flags

# The odkit modules a command needs are imported inside its functions: loading a command module (to parse
# its flags, print --help or refuse a bad flag) must not import torch, and `odkit predict` must run without it
# (tests/test_train_cli.py, tests/test_predict.py).


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    p.set_defaults(command=command)
    add_config_flags(p)
    p.add_argument("--model_dir", required=True, help="where checkpoints, pipeline.config and train/ events go")
    p.add_argument("--num_train_steps", type=int, default=None, help="overrides train_config.num_steps")
    p.add_argument("--checkpoint_every_n", type=int, default=1000, help="save a checkpoint every N steps")
    p.add_argument(
        "--checkpoint_max_to_keep", type=int, default=7, help="keep the newest N checkpoints (TF default 7)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (model init, data order, augmentation)")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="auto: bf16 on capable GPUs, fp16+GradScaler on others, fp32 on CPU (bf16 if use_bfloat16)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the training step on a GPU; on the CPU the focal-loss kernels only (measured faster; the compiled model was not)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--eval_every_n", type=int, default=0, help="evaluate a checkpoint every N steps (0: never)")
    p.add_argument("--num_workers", type=int, default=None, help="data-loading worker processes")
    p.add_argument("--log_every_n", type=int, default=10, help="progress line and TensorBoard scalars every N steps")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (reproducible resumes)")
    p.add_argument(
        "--allow_download",
        action="store_true",
        help="allow fetching torchvision:// fine_tune_checkpoint weights from the internet",
    )


def run(args: argparse.Namespace) -> int:
    from odkit.errors import OdkitError
    from odkit.fileio import check_output_dir

    check_output_dir(args.model_dir, "--model_dir")
    if args.num_workers is not None and args.num_workers < 0:
        raise OdkitError(f"--num_workers must be >= 0, got {args.num_workers}")
    if args.num_train_steps is not None and args.num_train_steps < 0:
        raise OdkitError(f"--num_train_steps must be >= 0, got {args.num_train_steps}")
    from odkit.workflows.train import train

    train(
        args.pipeline_config_path,
        args.model_dir,
        overrides=args.override,
        config_overrides=args.config_override,
        allow_unsupported=args.allow_unsupported,
        num_train_steps=args.num_train_steps,
        checkpoint_every_n=args.checkpoint_every_n,
        keep_checkpoints=args.checkpoint_max_to_keep,
        seed=args.seed,
        precision=args.precision,
        compile=args.compile,
        device=args.device,
        eval_every_n=args.eval_every_n,
        num_workers=args.num_workers,
        log_every_n=args.log_every_n,
        deterministic=args.deterministic,
        allow_download=args.allow_download,
    )
    return 0
