"""odkit.runtime: cores from affinity and cgroup quota; threads + workers never over-subscribe them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from odkit import runtime
from odkit.runtime import ThreadPlan, cgroup_cpu_quota, plan_threads


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_along_the_path(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    _write(proc, "0::/kubepods/pod1/ctr\n")
    root = tmp_path / "fs"
    _write(root / "kubepods" / "cpu.max", "max 100000\n")
    _write(root / "kubepods" / "pod1" / "cpu.max", "250000 100000\n")
    _write(root / "kubepods" / "pod1" / "ctr" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(proc, root) == pytest.approx(2.5)  # the tightest limit on the way up


def test_cgroup_v2_unlimited_and_namespaced_root(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    _write(proc, "0::/\n")
    root = tmp_path / "fs"
    _write(root / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(proc, root) is None
    _write(root / "cpu.max", "150000 100000\n")  # a container sees its own cgroup at the root
    assert cgroup_cpu_quota(proc, root) == pytest.approx(1.5)


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    _write(proc, "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n0::/\n")
    root = tmp_path / "fs"
    _write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "300000\n")
    _write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(proc, root) == pytest.approx(3.0)
    _write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_quota(proc, root) is None
    assert cgroup_cpu_quota(tmp_path / "missing", root) is None


def test_available_cores_takes_the_smaller_of_affinity_and_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "affinity_cores", lambda: 8)
    monkeypatch.setattr(runtime, "cgroup_cpu_quota", lambda: 2.5)
    assert runtime.available_cores() == 2  # rounded down: 3 threads on 2.5 cores would be throttled
    monkeypatch.setattr(runtime, "cgroup_cpu_quota", lambda: 0.5)
    assert runtime.available_cores() == 1
    monkeypatch.setattr(runtime, "cgroup_cpu_quota", lambda: None)
    assert runtime.available_cores() == 8


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 8, 16, 64])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_plans_never_oversubscribe(cores: int, device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for role in ("train", "eval", "infer"):
        plan = plan_threads(role, device=device, cores=cores, max_workers=64)
        assert plan.threads >= 1 and plan.workers >= 0 and plan.interop_threads == 1
        assert plan.threads + plan.workers <= cores, plan
    p = plan_threads("train", device=device, cores=cores, max_workers=1)
    assert p.workers <= 1  # num_readers caps the workers


def test_plan_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert plan_threads("train", cores=1) == ThreadPlan(1, 1, 1, 0)
    assert plan_threads("train", cores=2) == ThreadPlan(2, 1, 1, 1)  # the 2-core CPU demo: no OpenMP barriers
    assert plan_threads("train", cores=16) == ThreadPlan(16, 12, 1, 4)
    cuda = plan_threads("train", device="cuda", cores=16)
    assert cuda.threads <= 2 and cuda.workers == 15
    assert plan_threads("train", cores=8, workers=3) == ThreadPlan(8, 5, 1, 3)  # --num_workers honoured
    assert plan_threads("infer", cores=4).threads == 4
    assert plan_threads("train", cores=8, processes=4) == ThreadPlan(2, 1, 1, 1)  # torchrun: cores per process
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert plan_threads("train", cores=8).cores == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's explicit choice wins
    assert plan_threads("train", cores=8).threads == 1
    assert plan_threads("train", cores=2, workers=0).describe() == "threads 1, workers 0"


def test_apply_sets_torch_threads() -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        runtime.apply_thread_plan(ThreadPlan(2, 1, 1, 0))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)



_RSS_KEPT = """
import os, sys
import numpy as np
from odkit.runtime import keep_freed_memory
if sys.argv[1] == "keep":
    print(keep_freed_memory())
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = rss()
a = np.ones(64 * 2**20 // 8)  # 64 MiB, above glibc's adaptive 32 MiB mmap limit; every page written
del a
print((rss() - before) // 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt: Linux only")
def test_keep_freed_memory_keeps_large_blocks_mapped() -> None:
    """A freed 64 MiB array goes back to the kernel by default (RSS drops again; the next one page-faults
    anew) and stays in the process after keep_freed_memory(), for the next allocation to reuse."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")

    def run(mode: str) -> list[str]:
        out = subprocess.run([sys.executable, "-c", _RSS_KEPT, mode], capture_output=True, text=True, env=env,
                             check=True)
        return out.stdout.split("\n")

    assert int(run("default")[0]) < 8  # MiB still resident after the free
    lines = run("keep")
    if lines[0] != "allocator: freed memory kept":
        pytest.skip(f"mallopt not available here: {lines[0]}")
    assert int(lines[1]) >= 60


def test_keep_freed_memory_leaves_a_chosen_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_allocator", None)
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    assert runtime.keep_freed_memory() == "allocator: as set in the environment"
    monkeypatch.setattr(runtime, "_allocator", None)
    monkeypatch.delenv("LD_PRELOAD")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert runtime.keep_freed_memory() == "allocator: as set in the environment"
