"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests run the same examples on every machine and run (CI included), so a failure reproduces;
# ODKIT_HYPOTHESIS_RANDOM=1 explores new random examples locally (with --hypothesis-seed=N to replay one).
settings.register_profile("odkit", derandomize=not os.environ.get("ODKIT_HYPOTHESIS_RANDOM"))
settings.load_profile("odkit")

# Under pytest-xdist (`make test` runs one worker per core) each worker and every odkit subprocess it starts
# uses one intra-op thread: the workers already fill the cores, and more threads would over-subscribe them.
# It also makes numerics independent of the machine's core count (the same reduction order on every CI host).
IN_XDIST_WORKER = bool(os.environ.get("PYTEST_XDIST_WORKER"))
if IN_XDIST_WORKER:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ODKIT_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (real TF OD API files and datasets); tests using it skip cleanly when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED} (set ODKIT_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def compat_dir(shared_dir: Path) -> Path:
    d = shared_dir / "compat"
    if not d.is_dir():
        pytest.skip(f"{d} not found")
    return d


@pytest.fixture(autouse=True, scope="session")
def _limit_threads() -> None:
    try:
        import torch
    except ImportError:  # the infer-only subprocess tests run without torch
        return
    torch.set_num_threads(1 if IN_XDIST_WORKER else max(1, min(2, os.cpu_count() or 1)))


# The longest test files start first, so that `make test`'s workers (pytest-xdist, whole files per worker)
# finish together instead of one worker starting a long end-to-end file last.
LONGEST_FIRST = ("test_e2e.py", "test_ssd_overfit.py", "test_mask_rcnn.py", "test_kill9.py", "test_serve.py",
                 "test_train_crash.py", "test_export_frcnn.py")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture
def one_thread():
    """One intra-op thread for tiny / CPU-bound models: the trajectory then does not depend on the thread
    count (with 2 threads the reduction order inside oneDNN kernels depends on the CPU's ISA), and no OpenMP
    spinning on a shared CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
