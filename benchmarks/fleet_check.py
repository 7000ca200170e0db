"""Fleet-scale `check`: N varied profiles with golden trees, checked by one whole command.

Prints the wall time with the default worker count (one per core once there
are a few hundred profiles) and with `--jobs 1`, the CPU seconds a run costs
(robust on a shared machine, where wall time is not), the peak memory of the
largest process, and the load average around the runs. Targets: 1,000 profiles in < 3 s; 10,000 in < 3 s on 2 cores.
Usage: python benchmarks/fleet_check.py [N] [RUNS]   (default 10000 5)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fleet import write_fleet  # noqa: E402


def timed(cmd: list[str], runs: int) -> tuple[list[float], float, int]:
    """Wall time of each run; CPU seconds (user + system, workers included) and peak KiB of the runs."""
    times, cpu, peak = [], 0.0, 0
    for _ in range(runs):
        start = time.perf_counter()
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(process.pid, 0)
        times.append(time.perf_counter() - start)
        assert os.waitstatus_to_exitcode(status) == 0, process.stderr.read() if process.stderr else b""
        process.returncode = 0
        if process.stderr:
            process.stderr.close()
        cpu += usage.ru_utime + usage.ru_stime
        peak = max(peak, usage.ru_maxrss)
    return times, cpu / runs, peak


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    exe = [sys.executable, "-m", "kvmbridge"]
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        hosts = Path(tmp) / "hosts"
        write_fleet(hosts, count)
        subprocess.run([*exe, "check", str(hosts), "--update"], check=True, capture_output=True)
        load_before = os.getloadavg()[0]
        parallel = timed([*exe, "check", str(hosts)], runs)
        serial = timed([*exe, "check", str(hosts), "--jobs", "1"], runs)
    load = f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    print(f"profiles:             {count} ({cores} usable cores, {load})")
    for name, (times, cpu, peak_kib) in (("default workers", parallel), ("--jobs 1", serial)):
        median = statistics.median(times)
        print(
            f"{name + ':':<21} median {median:.2f} s, best {min(times):.2f} s, {count / median:.0f} profiles/s,"
            f" {cpu:.2f} s CPU per run, peak {peak_kib / 1024:.0f} MiB (largest process)"
        )
    print("target:               < 3 s for 10,000 on 2 cores")


if __name__ == "__main__":
    main()
