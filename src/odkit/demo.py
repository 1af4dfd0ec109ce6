"""`odkit.demo.run_demo(...)`: the demo workflow (odkit.workflows.demo) with the commands run by odkit.cli.main.

A facade at the top, beside the ``odkit`` package and ``odkit.cli``: it is the one place that hands the CLI
to the workflow, so that neither imports the other.
"""

from __future__ import annotations

import os
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


def run_demo(
    workdir: str | os.PathLike[str] = "odkit_demo",
    data_dir: str | os.PathLike[str] | None = None,
    config: str = DEFAULT_CONFIG,
    steps: int | None = None,
    seed: int = 0,
    images_per_class: int = 120,
    num_shards: int = 2,
    device: str | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """See odkit.workflows.demo.run_demo; each step runs as the `odkit` command a user would type."""
    return _run_demo(workdir, data_dir, config, steps, seed, images_per_class, num_shards, device, fresh,
                     run_command=main)
