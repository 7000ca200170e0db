"""Fleet-scale `check`: N varied profiles with golden trees, checked by one whole process.

Prints profiles/second and the child's peak memory. Target: 1,000 profiles in < 3 s.
Usage: python benchmarks/fleet_check.py [N] [RUNS]
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fleet import write_fleet  # noqa: E402


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    exe = [sys.executable, "-m", "kvmbridge"]
    with tempfile.TemporaryDirectory() as tmp:
        hosts = Path(tmp) / "hosts"
        write_fleet(hosts, count)
        subprocess.run([*exe, "check", str(hosts), "--update"], check=True, capture_output=True)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            result = subprocess.run([*exe, "check", str(hosts)], capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - start)
            assert result.returncode == 0, result.stdout[-500:]
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    best, median = min(times), statistics.median(times)
    print(f"profiles:           {count}")
    print(f"check, whole process: median {median:.2f} s, best {best:.2f} s  (target < 3 s for 1,000)")
    print(f"throughput:         {count / median:.0f} profiles/s")
    print(f"peak memory:        {peak_kib / 1024:.1f} MiB (largest child process)")


if __name__ == "__main__":
    main()
