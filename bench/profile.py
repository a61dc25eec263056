"""Sample the server processes with py-spy during a phase, and summarise the stacks.

``python -m bench.profile FILE.txt [TOP]`` prints the functions with the most samples, self and
inclusive, from py-spy's collapsed-stack output (``--format raw``).
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import servers

OUT = Path(__file__).resolve().parent / "results"


def start(flavour: Any, seconds: float, label: str) -> list[Path]:
    """Start one py-spy per server process (they stop by themselves after ``seconds``); only
    the thread holding the GIL is sampled, so the samples are Python CPU time."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    paths = []
    for proc in flavour.procs:
        path = OUT / f"profile-{label}-{proc.name}.txt"
        cmd = [spy, "record", "-p", str(proc.pid), "-d", str(int(seconds)), "-r", "200", "--gil", "-f", "raw"]
        cmd += ["-o", str(path)]
        popen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.STARTED.append(popen)
        paths.append(path)
    return paths


def summarise(path: Path, top: int = 40) -> str:
    """Self and inclusive sample counts per function of a collapsed-stack file."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].split(":")[0].rstrip(")") for f in stack.split(";")]
        if "idle" in stack or frames[-1].startswith("select ") or "epoll" in frames[-1]:
            continue  # waiting, not working
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    lines = [f"{path.name}: {total} busy samples", "-- self --"]
    lines += [f"{c * 100 / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    lines += ["-- inclusive --"]
    lines += [f"{c * 100 / total:5.1f}%  {f}" for f, c in incl.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 40))
