"""`odkit demo`: the reference workflow end to end (see odkit.workflows.demo)."""

from __future__ import annotations

import argparse

# The odkit modules a command needs are imported inside its functions: loading a command module (to parse
# its flags, print --help or refuse a bad flag) must not import torch, and `odkit predict` must run without it
# (tests/test_train_cli.py, tests/test_predict.py).


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--data_dir", help="a real Oxford-IIIT Pet folder (odkit download pets); default: built-in data")
    p.add_argument("--workdir", default="odkit_demo", help="where everything is written (default: ./odkit_demo)")
    p.add_argument("--config", default=None, help="a config name from odkit's configs/ or a path to a .config file")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the config's num_steps)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the built-in data, the model's initialisation, data order and augmentation")
    p.add_argument("--images_per_class", type=int, default=120, help="built-in data: trainval images per class")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--fresh", action="store_true", help="delete the workdir first")


def run(args: argparse.Namespace) -> int:
    from odkit.cli import main
    from odkit.workflows.demo import DEFAULT_CONFIG, run_demo

    run_demo(
        workdir=args.workdir,
        data_dir=args.data_dir,
        config=args.config or DEFAULT_CONFIG,
        steps=args.steps,
        seed=args.seed,
        images_per_class=args.images_per_class,
        device=args.device,
        fresh=args.fresh,
        run_command=main,
    )
    return 0
