"""pipeline.config loading, overrides, printing and diff; read tracking (odkit.config.tracking).

config = odkit.config.load("pipeline.config", overrides=["train_config.batch_size=8"])

Which set fields odkit honours is derived from the code that reads them: odkit.workflows.config_check
(``odkit config check``, ``require_supported``).
"""

from __future__ import annotations

import argparse

from odkit.config.diff import Difference, diff
from odkit.config.loader import load, load_text, load_with_notes, parse_text, save, to_text
from odkit.config.overrides import apply_config_overrides, apply_override, apply_overrides
from odkit.errors import ConfigError
from odkit.protos import pipeline_pb2

__all__ = [
    "Difference",
    "apply_config_overrides",
    "apply_override",
    "apply_overrides",
    "diff",
    "load",
    "load_from_args",
    "load_text",
    "load_with_notes",
    "parse_text",
    "save",
    "to_text",
]


def load_from_args(args: argparse.Namespace) -> pipeline_pb2.TrainEvalPipelineConfig:
    """Load from the flags of odkit.cli.common.add_config_flags (--pipeline_config_path, --override,
    --config_override)."""
    path = getattr(args, "pipeline_config_path", None)
    if not path:
        raise ConfigError("no pipeline config given", hint="pass --pipeline_config_path PATH")
    return load(
        path,
        overrides=getattr(args, "override", None) or (),
        config_overrides=getattr(args, "config_override", None) or (),
    )
