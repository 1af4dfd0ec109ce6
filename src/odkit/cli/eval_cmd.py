"""`odkit eval`: evaluate checkpoints with COCO / PASCAL metrics (model_main_tf2.py --checkpoint_dir)."""

from __future__ import annotations

import argparse

from odkit.cli.common import add_config_flags

# The odkit modules a command needs are imported inside its functions: loading a command module (to parse
# its flags, print --help or refuse a bad flag) must not import torch, and `odkit predict` must run without it
# (tests/test_train_cli.py, tests/test_predict.py).


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    add_config_flags(p)
    p.add_argument("--model_dir", required=True, help="outputs go to MODEL_DIR/eval (metrics JSON, TensorBoard)")
    p.add_argument("--checkpoint_dir", default=None, help="where checkpoints appear (default: --model_dir)")
    p.add_argument("--eval_timeout", type=float, default=3600.0,
                   help="stop after this many seconds without a new checkpoint (default 3600)")
    p.add_argument("--wait_interval", type=float, default=None,
                   help="seconds between checks for a new checkpoint (default: eval_config.eval_interval_secs, 300)")
    p.add_argument("--run_once", action="store_true", help="evaluate the latest checkpoint once and exit")
    p.add_argument("--sample_1_of_n_eval_examples", type=int, default=None,
                   help="evaluate every n-th eval example only (sets eval_input_reader.sample_1_of_n_examples)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--use_ema", choices=("auto", "yes", "no"), default="auto",
                   help="evaluate the EMA weights (auto: eval_config.use_moving_averages)")
    p.set_defaults(command=command)


def run(args: argparse.Namespace) -> int:
    import logging

    from odkit.config import load_from_args
    from odkit.errors import OdkitError
    from odkit.evaluation.outputs import format_table
    from odkit.evaluation.settings import eval_settings
    from odkit.fileio import check_output_dir
    from odkit.workflows.config_check import require_supported
    from odkit.workflows.continuous_eval import describe_last, run_continuous_eval
    from odkit.workflows.evaluate import evaluate_checkpoint

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    check_output_dir(args.model_dir, "--model_dir")
    config = load_from_args(args)
    require_supported(config, allow_unsupported=args.allow_unsupported, path=args.pipeline_config_path)
    settings = eval_settings(config.eval_config)
    if args.sample_1_of_n_eval_examples is not None:
        if args.sample_1_of_n_eval_examples < 1:
            raise OdkitError("--sample_1_of_n_eval_examples must be >= 1",
                             hint=f"got {args.sample_1_of_n_eval_examples}")
        for reader in config.eval_input_reader:
            reader.sample_1_of_n_examples = args.sample_1_of_n_eval_examples
    use_ema = {"auto": None, "yes": True, "no": False}[args.use_ema]
    wait = args.wait_interval
    if wait is None:
        wait = settings.eval_interval_secs
    if args.eval_timeout < 0 or wait < 0:
        raise OdkitError("--eval_timeout and --wait_interval must be >= 0")

    def evaluate(path, step):  # type: ignore[no-untyped-def]
        metrics = evaluate_checkpoint(config, path, args.model_dir, device=args.device, use_ema=use_ema)
        print(format_table(metrics, step), flush=True)
        return metrics

    result = run_continuous_eval(
        args.checkpoint_dir or args.model_dir,
        evaluate,
        eval_timeout=args.eval_timeout,
        wait_interval=wait,
        run_once=args.run_once,
        final_step=int(config.train_config.num_steps),
        max_evals=settings.max_evals,
        log=lambda m: print(m, flush=True),
    )
    print(describe_last(result), flush=True)
    return 0
