"""CPU accounting from /proc: a process tree, PostgreSQL backends, the whole machine.

Imported by bench/annotate_load.py and bench.loadtest.report.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, str, int, int, int, int] | None:
    """(ppid, comm, utime, stime, cutime, cstime) in clock ticks, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is state (field 3); utime is field 14 -> index 11
    return int(fields[1]), comm, int(fields[11]), int(fields[12]), int(fields[13]), int(fields[14])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def process_tree_ticks(root_pid: int) -> dict[int, int]:
    """CPU ticks per process of a tree: the root's own + reaped children, each live descendant's own."""
    stats = {}
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st is not None:
            stats[pid] = st
    children = defaultdict(list)
    for pid, st in stats.items():
        children[st[0]].append(pid)
    out = {}
    if root_pid in stats:
        _, _, u, s, cu, cs = stats[root_pid]
        out[root_pid] = u + s + cu + cs
    todo = list(children.get(root_pid, []))
    while todo:
        pid = todo.pop()
        _, _, u, s, _, _ = stats[pid]
        out[pid] = u + s
        todo.extend(children.get(pid, []))
    return out


def postgres_ticks(dbname: str) -> tuple[dict[int, int], dict[int, int]]:
    """(backends of `dbname`, shared background processes) -> CPU ticks per pid.

    Backends are recognised by their process title "postgres: ...: <user> <db> <host> ...".
    Background processes (walwriter, checkpointer, autovacuum, ...) serve every database
    on the server; they are reported apart.
    """
    backends, background = {}, {}
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st is None or st[1] != "postgres":
            continue
        title = _cmdline(pid)
        if f" {dbname} " in title:
            backends[pid] = st[2] + st[3]
        elif title.startswith("postgres:") and " 127.0.0.1(" not in title and "[local]" not in title:
            background[pid] = st[2] + st[3]
    return backends, background


class CpuSampler:
    """Samples CPU ticks of the server processes every second; keeps the last value per pid,
    so processes that exit during the window still count up to their last sample."""

    def __init__(self, gunicorn_pid: int, pg_dbname: str | None):
        self.gunicorn_pid = gunicorn_pid
        self.pg_dbname = pg_dbname
        self.first: dict[str, dict[int, int]] = {}
        self.last: dict[str, dict[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> dict[str, dict[int, int]]:
        out = {"gunicorn": process_tree_ticks(self.gunicorn_pid)}
        if self.pg_dbname:
            out["pg_backends"], out["pg_background"] = postgres_ticks(self.pg_dbname)
        return out

    def start(self) -> None:
        self.first = self._sample()
        self.last = {k: dict(v) for k, v in self.first.items()}
        self._thread.start()

    def _merge(self, sample) -> None:
        for group, per_pid in sample.items():
            self.last.setdefault(group, {}).update(per_pid)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._merge(self._sample())

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._merge(self._sample())
        result = {}
        for group, per_pid in self.last.items():
            before = self.first.get(group, {})
            ticks = sum(max(0, t - before.get(pid, 0)) for pid, t in per_pid.items())
            result[group] = ticks * 1000.0 / CLK_TCK  # ms
        return result


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [float(v) for v in parts[:8]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return total - idle, total
