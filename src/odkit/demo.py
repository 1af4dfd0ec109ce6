"""`odkit.demo.run_demo(...)`: the demo workflow (odkit.workflows.demo) with the commands run by odkit.cli.main.

A facade at the top, beside the ``odkit`` package and ``odkit.cli``: it is the one place that hands the CLI
to the workflow, so that neither imports the other.
"""

from __future__ import annotations

from typing import Any

from odkit.cli import main
from odkit.workflows.demo import (
    COCO_KEYS,
    CONFIG_DIR,
    DEFAULT_CONFIG,
    available_configs,
    breeds_in,
    resolve_config,
    write_label_map,
)
from odkit.workflows.demo import run_demo as _run_demo

__all__ = ["COCO_KEYS", "CONFIG_DIR", "DEFAULT_CONFIG", "available_configs", "breeds_in", "resolve_config",
           "run_demo", "write_label_map"]


def run_demo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """odkit.workflows.demo.run_demo (same arguments), each step run as the `odkit` command a user would type."""
    return _run_demo(*args, run_command=main, **kwargs)
