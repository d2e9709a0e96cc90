"""Process helpers for the harness: CPU time, RSS, core pinning, fd limits, machine facts.

CPU time is read from /proc/<pid>/stat (utime + stime of every thread of the process), so no
psutil is needed; RSS from /proc/<pid>/status.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import resource
import signal
import subprocess
from importlib import metadata
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1
#: Cores on this machine; with 2 the servers under test get core 0, the generator core 1.
CORES = sorted(os.sched_getaffinity(0))
SERVER_CORES = {CORES[0]}
GENERATOR_CORES = {CORES[-1]}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by every thread of `pid` (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB (VmRSS; 0 if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """The direct child processes of `pid` (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def tree(pid: int) -> list[int]:
    """`pid` and every process descended from it (a provider and its worker processes)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += children(current)
    return pids


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of `pid` and each of its descendants, by pid."""
    return {p: cpu_seconds(p) for p in tree(pid)}


def context_switches(pid: int) -> int:
    """Times every thread of `pid` has been switched out so far, voluntarily (it waited) or
    not (preempted); 0 if it is gone."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        with contextlib.suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split(":")[1])
    return total


def tree_switches(pid: int) -> dict[int, int]:
    """`context_switches` of `pid` and each of its descendants, by pid."""
    return {p: context_switches(p) for p in tree(pid)}


def switches_since(before: dict[int, int], after: dict[int, int]) -> int:
    """Context switches of a process tree between two `tree_switches` samples."""
    return sum(n - before.get(p, 0) for p, n in after.items())


def cpu_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds a process tree used between two `tree_cpu` samples (a process started in
    between counts from zero; one that exited in between is lost)."""
    return sum(seconds - before.get(p, 0.0) for p, seconds in after.items())


def open_fds(pid: int) -> int:
    """File descriptors `pid` holds (0 if it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


#: TCP states in /proc/net/tcp.
ESTABLISHED = "01"
LISTEN = "0A"


def connections_on_port(pid: int, port: int) -> int:
    """Established TCP connections `pid` holds whose local port is `port` (its accepted
    WebSocket sessions), from /proc/<pid>/fd and /proc/<pid>/net/tcp{,6}; 0 if it is gone."""
    return _sockets_on_port(pid, port, ESTABLISHED)


def listening_on_port(pid: int, port: int) -> bool:
    """Whether `pid` holds a socket listening on `port` (False if it is gone)."""
    return _sockets_on_port(pid, port, LISTEN) > 0


def _sockets_on_port(pid: int, port: int, state: str) -> int:
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        count = 0
        for table in ("tcp", "tcp6"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{table}") as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    local_port = int(fields[1].rsplit(":", 1)[1], 16)
                    if local_port == port and fields[3] == state and fields[9] in inodes:
                        count += 1
        return count
    except OSError:
        return 0


def pin(pid: int, cores: set[int]) -> None:
    """Pin every current thread of `pid` to `cores` (threads created later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cores)


def pinned_to(cores: set[int]) -> object:
    """A `preexec_fn` that pins the child (and all its future threads) before exec."""

    def apply() -> None:
        os.sched_setaffinity(0, cores)
        # Die with the harness (SIGKILL included): no orphan left spinning on a core.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return apply


def raise_fd_limit(wanted: int = 200_000) -> int:
    """Raise RLIMIT_NOFILE (soft and, as root, hard) so children can hold many sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, wanted)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
    except (ValueError, OSError):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    try:
        node = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        node = "?"
    from provider.natsserver import find_nats_server

    try:
        nats = subprocess.run(
            [find_nats_server(), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except Exception:
        nats = "?"
    return {
        "cpu": f"{os.cpu_count()} cores ({model})",
        "memory": f"{mem_kib / 1024 / 1024:.0f} GiB",
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": f"CPython {platform.python_version()}",
        "node": node,
        "nats-server": nats,
        "websockets": _version("websockets"),
        "nats-py": _version("nats-py"),
        "ws (npm)": "8.23.0",
    }
