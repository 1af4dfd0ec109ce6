"""Flags shared by several commands."""

from __future__ import annotations

import argparse


def add_config_flags(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--pipeline_config_path, --override K=V (repeatable), --config_override TEXT, --allow_unsupported."""
    p.add_argument("--pipeline_config_path", required=required, help="path to pipeline.config")
    add_override_flags(p)
    p.add_argument(
        "--allow_unsupported",
        action="store_true",
        help="start even if the config sets fields odkit does not honour (see `odkit config check`)",
    )


def add_override_flags(p: argparse.ArgumentParser) -> None:
    """--override K=V and --config_override TEXT (both repeatable)."""
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="K=V",
        help="override one field by dotted path, e.g. train_config.batch_size=8 (repeatable)",
    )
    p.add_argument(
        "--config_override",
        action="append",
        default=[],
        metavar="TEXT",
        help="text-format pipeline snippet merged over the file (as exporter_main_v2.py's flag)",
    )

