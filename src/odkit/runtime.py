"""CPU threads and data-loader workers, chosen from the cores this process may actually use.

One place for the choice, used by train, eval, demo, predict (onnxruntime / TorchScript sessions) and the
benchmarks. ``available_cores()`` is the smaller of the CPU affinity mask (``os.sched_getaffinity``: taskset,
cpusets, Kubernetes CPU manager) and the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``, the
tightest along the process's cgroup path), never ``os.cpu_count()`` alone, which counts the host's CPUs.

``plan_threads`` never over-subscribes: main-process intra-op threads + DataLoader workers (each worker runs
torch with one thread, see ``worker_init``) <= available cores. Over-subscription is what turns a shared
machine into a 10-20x slowdown: every small op ends in an OpenMP barrier, and a barrier waits for the thread
that the scheduler has just taken off a core.

``keep_freed_memory`` stops glibc from handing every large freed tensor back to the kernel: by default a
CPU training step maps and unmaps its big activations anew each step and pays a page fault per 4 KiB page
(measured: 166,000 faults and 0.29 s of system time per FPN-lite 320 step at batch 8, 30% of the step).

No torch import at module level: ``odkit predict`` imports this without torch.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def affinity_cores() -> int:
    """CPUs in this process's affinity mask (os.cpu_count() where the platform has no affinity call)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _walk_up(root: Path, rel: str) -> list[Path]:
    """root/rel, its parents up to root, and root itself (a container often sees only its own cgroup at root)."""
    out: list[Path] = []
    p = root / rel.strip("/") if rel.strip("/") else root
    while True:
        out.append(p)
        if p == root or root not in p.parents:
            break
        p = p.parent
    if root not in out:
        out.append(root)
    return out


def cgroup_cpu_quota(proc_cgroup: Path = PROC_SELF_CGROUP, root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota in cores (e.g. 1.5) from cgroup v2 cpu.max or v1 cfs quota/period; None when unlimited."""
    text = _read(proc_cgroup)
    if text is None:
        return None
    limits: list[float] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # cgroup v2 unified hierarchy
            for base in (root, root / "unified"):
                for d in _walk_up(base, rel):
                    val = _read(d / "cpu.max")
                    if val:
                        quota, _, period = val.partition(" ")
                        if quota != "max" and period:
                            try:
                                limits.append(int(quota) / int(period))
                            except (ValueError, ZeroDivisionError):
                                pass
        elif "cpu" in controllers.split(","):  # cgroup v1 cpu controller
            for mount in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
                for d in _walk_up(mount, rel):
                    q, per = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
                    try:
                        if q is not None and per is not None and int(q) > 0 and int(per) > 0:
                            limits.append(int(q) / int(per))
                    except ValueError:
                        pass
    return min(limits) if limits else None


def available_cores() -> int:
    """Cores this process may use: min(affinity mask, cgroup CPU quota rounded down), at least 1."""
    n = affinity_cores()
    quota = cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.floor(quota + 1e-6)))
    return n


def _env_threads() -> int | None:
    """An explicit OMP_NUM_THREADS from the user wins over the automatic choice."""
    val = os.environ.get("OMP_NUM_THREADS", "").strip()
    try:
        n = int(val)
    except ValueError:
        return None
    return n if n > 0 else None


@dataclass(frozen=True)
class ThreadPlan:
    cores: int  # cores available to this process (per process under torchrun)
    threads: int  # intra-op threads in the main process
    interop_threads: int  # inter-op threads (odkit runs no concurrent graph branches on the CPU)
    workers: int  # DataLoader worker processes, one torch thread each

    def describe(self) -> str:
        return f"threads {self.threads}, workers {self.workers}"


def plan_threads(
    role: str = "train",
    *,
    device: str = "cpu",
    workers: int | None = None,
    max_workers: int | None = None,
    processes: int | None = None,
    cores: int | None = None,
) -> ThreadPlan:
    """Threads and workers for one process.

    role: "train" / "eval" (a model step plus a data loader) or "infer" (a runtime session, no loader).
    device: "cpu" or "cuda" — on a GPU the main process only launches kernels, so the cores go to workers.
    workers: an explicit --num_workers (honoured; threads get the rest). max_workers: the input reader's
    num_readers. processes: processes sharing this machine (torchrun's LOCAL_WORLD_SIZE by default).

    On the CPU: one worker per 4 cores (at least one from 2 cores on), the rest as intra-op threads. The
    loader of odkit's configs costs a small fraction of a step (the demo: ~20 ms of CPU per batch of 16
    against ~240 ms for the step on one thread), so one worker keeps up and is mostly asleep. On 2 cores this
    gives 1 thread + 1 worker, measured on the 2-core development machine (demo model, batch 16, s/step):
    alone 0.244 with 1 thread vs 0.197 with 2; next to one CPU-bound process 0.269 with 1 thread vs 0.630
    with 2, because libgomp's spinning barriers stall whenever the scheduler takes one of the two threads
    off a core. One thread gives up ~20% when the machine is idle and stays within 1.1x when it is shared.
    """
    if processes is None:
        try:
            processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        except ValueError:
            processes = 1
    total = available_cores() if cores is None else max(1, int(cores))
    n = max(1, total // max(1, processes))
    cap = None if max_workers is None else max(0, int(max_workers))
    if role == "infer":
        threads = _env_threads() or n
        return ThreadPlan(n, threads, 1, 0)
    if workers is None:
        if device.startswith("cuda"):
            workers = n - 1 if n > 1 else 0
        else:
            workers = 0 if n == 1 else max(1, n // 4)
        if cap is not None:
            workers = min(workers, cap)
    workers = max(0, int(workers))
    threads = _env_threads() or max(1, n - workers)
    if device.startswith("cuda"):
        threads = min(threads, 2)
    return ThreadPlan(n, threads, 1, workers)


_applied: ThreadPlan | None = None


def apply_thread_plan(plan: ThreadPlan) -> None:
    """torch.set_num_threads(plan.threads); inter-op threads too while torch still allows it (before any
    parallel work); keep_freed_memory(). Safe to call more than once (train then eval in one process)."""
    global _applied
    import torch

    keep_freed_memory()
    if torch.get_num_threads() != plan.threads:
        torch.set_num_threads(plan.threads)
    if _applied is None and torch.get_num_interop_threads() != plan.interop_threads:
        try:
            torch.set_num_interop_threads(plan.interop_threads)
        except RuntimeError:  # already started; torch allows setting it only once
            pass
    _applied = plan


def worker_init(_: int = 0) -> None:
    """DataLoader worker_init_fn: one torch / OpenMP thread per worker (workers are counted as cores), and
    keep_freed_memory() (a forked worker inherits it; a spawned one would not)."""
    import torch

    keep_freed_memory()
    torch.set_num_threads(1)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1
_allocator: str | None = None


def keep_freed_memory() -> str:
    """Keep freed memory in the process heap for reuse (glibc only); returns what was done, for progress lines.

    glibc serves every allocation above its mmap threshold (128 KiB, adapting up to 32 MiB) with a fresh mmap
    and unmaps it on free, and trims the heap top above 128 KiB: a CPU training step then page-faults its
    activations and gradients in anew every step. Raising both thresholds keeps those pages mapped, so the
    next step reuses them: the FPN-lite 320 step at batch 8 on 2 cores went from 11.9 to 15.6 img/s and its
    system time from 0.29 to 0.01 s/step, peak RSS unchanged (torchvision's ssdlite320: 13.7 -> 18.1 img/s).
    Memory freed by the process is then not returned to the OS until it exits, which is what a training or
    evaluation process wants. Skipped (and said) where the user chose: MALLOC_* variables, glibc.malloc tunables, an
    LD_PRELOADed allocator (jemalloc, tcmalloc), or not glibc. Idempotent.
    """
    global _allocator
    if _allocator is not None:
        return _allocator
    if not sys.platform.startswith("linux"):
        _allocator = "allocator: system default"
    elif (any(k.startswith("MALLOC_") for k in os.environ) or "malloc" in os.environ.get("GLIBC_TUNABLES", "")
          or os.environ.get("LD_PRELOAD")):
        _allocator = "allocator: as set in the environment"
    else:
        try:
            libc = ctypes.CDLL(None)
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # musl and others: no mallopt
            _allocator = "allocator: system default"
        else:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            ok = mallopt(_M_MMAP_THRESHOLD, _INT_MAX) or mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
            ok = ok and mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
            _allocator = "allocator: freed memory kept" if ok else "allocator: system default"
    return _allocator
