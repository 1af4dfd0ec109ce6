"""pipeline.config loading, overrides, printing, diff and the support registry.

config = odkit.config.load("pipeline.config", overrides=["train_config.batch_size=8"])
odkit.config.require_supported(config, allow_unsupported=False, path="pipeline.config")
"""

from __future__ import annotations

import argparse

from odkit.config.diff import Difference, diff
from odkit.config.loader import load, load_text, load_with_notes, parse_text, save, to_text
from odkit.config.overrides import apply_config_overrides, apply_override, apply_overrides
from odkit.config.support import Unsupported, check, require_supported
from odkit.protos import pipeline_pb2

__all__ = [
    "Difference",
    "Unsupported",
    "apply_config_overrides",
    "apply_override",
    "apply_overrides",
    "check",
    "diff",
    "load",
    "load_from_args",
    "load_text",
    "load_with_notes",
    "parse_text",
    "require_supported",
    "save",
    "to_text",
]


def load_from_args(args: argparse.Namespace) -> pipeline_pb2.TrainEvalPipelineConfig:
    """Load from the flags of odkit.cli.common.add_config_flags (--pipeline_config_path, --override,
    --config_override)."""
    from odkit.errors import ConfigError

    path = getattr(args, "pipeline_config_path", None)
    if not path:
        raise ConfigError("no pipeline config given", hint="pass --pipeline_config_path PATH")
    return load(
        path,
        overrides=getattr(args, "override", None) or (),
        config_overrides=getattr(args, "config_override", None) or (),
    )
