"""The machine a benchmark ran on, for the line each script appends to RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

__all__ = ["machine", "report"]


def machine() -> str:
    """OS, architecture, cores and CPU model, memory, Python version."""
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, "
            f"Python {platform.python_version()}")


def report(title: str, script: str, lines: list[str], *, record: bool = True) -> None:
    """Print a benchmark's figures and (``record``) append them to ``bench/RESULTS.md`` under a
    dated heading with the machine."""
    print("\n".join(lines))
    if not record:
        return
    with (Path(__file__).resolve().parent / "RESULTS.md").open("a", encoding="utf-8") as f:
        f.write(f"\n## {title} ({dt.datetime.now():%Y-%m-%d %H:%M}, `{script}`)\n\n"
                f"- machine: {machine()}\n" + "\n".join(lines) + "\n")
