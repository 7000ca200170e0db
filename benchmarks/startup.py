"""Start-up cost of `kvmbridge render`, which is mostly Python start-up.

Prints the median whole-process time of `kvmbridge render golden/<case>.toml`
beside `python -c "import jinja2, click"` and their ratio (target: <= 1.5).
Usage: python benchmarks/startup.py [CASE] [RUNS]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def median_seconds(command: list[str], runs: int) -> float:
    subprocess.run(command, check=True, capture_output=True)  # warm the page cache and .pyc files
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    case = sys.argv[1] if len(sys.argv) > 1 else "article"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    exe = shutil.which("kvmbridge") or str(Path(sys.executable).parent / "kvmbridge")
    profile = str(REPO / "golden" / f"{case}.toml")
    ours = median_seconds([exe, "render", profile], runs)
    base = median_seconds([sys.executable, "-c", "import jinja2, click"], runs)
    bare = median_seconds([sys.executable, "-c", "pass"], runs)
    print(f"python -c pass:                 {bare * 1000:7.1f} ms")
    print(f"python -c 'import jinja2, click': {base * 1000:5.1f} ms")
    print(f"kvmbridge render {case}.toml:   {ours * 1000:7.1f} ms")
    print(f"ratio render / import:          {ours / base:7.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
