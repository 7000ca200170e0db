"""One profile with many bridges: whole-process `render` time.

Targets: 200 bridges <= 0.25 s, 1,000 bridges <= 0.8 s.
Usage: python benchmarks/big_profile.py [N ...]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def big_profile(bridges: int) -> str:
    lines = ['hostname = "big"', ""]
    for i in range(bridges):
        lines += [f"[bridges.br{i}]", f'ports = ["p{i}a", "p{i}b"]', "stp = true", "forward_delay = 4"]
        if i == 0:
            lines.append('ipv4 = { method = "static", address = "10.0.0.2/16", gateway = "10.0.0.1" }')
        lines += ["", f"[networks.net{i}]", f'bridge = "br{i}"', f"autostart = {'true' if i % 2 else 'false'}", ""]
    return "\n".join(lines)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [200, 1000]
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            profile = Path(tmp) / f"big{size}.toml"
            profile.write_text(big_profile(size))
            command = [sys.executable, "-m", "kvmbridge", "render", str(profile), "-o", str(Path(tmp) / f"out{size}")]
            subprocess.run(command, check=True, capture_output=True)
            times = []
            for _ in range(7):
                start = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True)
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            print(f"{size:5d} bridges ({2 * size} ports, {size} networks): render -o median {median:.3f} s")


if __name__ == "__main__":
    main()
