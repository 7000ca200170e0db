"""Fleet-scale `check`: N varied profiles with golden trees, checked by one whole command.

Prints the wall time with the default worker count (one per core once there
are a few hundred profiles) and with `--jobs 1`, and the peak memory of one
process. Targets: 1,000 profiles in < 3 s; 10,000 in < 3 s on 2 cores.
Usage: python benchmarks/fleet_check.py [N] [RUNS]   (default 10000 5)
"""

from __future__ import annotations

import os
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


def timed(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        assert result.returncode == 0, result.stdout[-500:] + result.stderr[-500:]
    return times


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    exe = [sys.executable, "-m", "kvmbridge"]
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        hosts = Path(tmp) / "hosts"
        write_fleet(hosts, count)
        subprocess.run([*exe, "check", str(hosts), "--update"], check=True, capture_output=True)
        parallel = timed([*exe, "check", str(hosts)], runs)
        serial = timed([*exe, "check", str(hosts), "--jobs", "1"], runs)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"profiles:             {count} ({cores} usable cores, load average {os.getloadavg()[0]:.2f})")
    for name, times in (("default workers", parallel), ("--jobs 1", serial)):
        median = statistics.median(times)
        print(f"{name + ':':<21} median {median:.2f} s, best {min(times):.2f} s, {count / median:.0f} profiles/s")
    print("target:               < 3 s for 10,000 on 2 cores")
    print(f"peak memory:          {peak_kib / 1024:.1f} MiB (largest single process)")


if __name__ == "__main__":
    main()
