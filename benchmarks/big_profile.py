"""One profile with many bridges, per renderer: load + render in process (the pure pipeline),
whole-process `render -o` (writes every file through Root), beside `netplan generate`
turning the same bridges' YAML into systemd-networkd units.

Targets: 200 bridges <= 0.25 s, 1,000 bridges <= 0.8 s (each renderer).
Usage: python benchmarks/big_profile.py [N ...]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RENDERERS = ("ifupdown", "ifupdown2", "netplan")


def big_profile(bridges: int, renderer: str = "ifupdown") -> str:
    lines = ['hostname = "big"', f'renderer = "{renderer}"', ""]
    for i in range(bridges):
        lines += [f"[bridges.br{i}]", f'ports = ["p{i}a", "p{i}b"]', "stp = true", "forward_delay = 4"]
        if i == 0:
            lines.append('ipv4 = { method = "static", address = "10.0.0.2/16", gateway = "10.0.0.1" }')
        lines += ["", f"[networks.net{i}]", f'bridge = "br{i}"', f"autostart = {'true' if i % 2 else 'false'}", ""]
    return "\n".join(lines)


def in_process(text: str) -> float:
    from kvmbridge.profile import parse_profile
    from kvmbridge.render import render

    times = []
    for _ in range(5):
        start = time.perf_counter()
        render(parse_profile(text, "big.toml", default_hostname="big", source_name="big.toml"))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tree_write(text: str, out: Path) -> str:
    """write_tree alone, in process, with its system calls counted: the figure load cannot blur."""
    import os

    from kvmbridge.profile import parse_profile
    from kvmbridge.render import render
    from kvmbridge.tree import write_tree

    files = render(parse_profile(text, "big.toml", default_hostname="big", source_name="big.toml"))
    counts = {"fsync": 0, "open": 0}
    real = {name: getattr(os, name) for name in counts}

    def counted(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return real[name](*args, **kwargs)

        return call

    times = []
    for run in range(3):
        shutil.rmtree(out, ignore_errors=True)
        if run == 0:
            for name in counts:
                setattr(os, name, counted(name))
        start = time.perf_counter()
        try:
            write_tree(files, out)
        finally:
            for name, function in real.items():
                setattr(os, name, function)
        times.append(time.perf_counter() - start)
    return (
        f"write_tree of {len(files)} files into a fresh folder: {counts['open']} opens, {counts['fsync']} fsyncs, "
        f"median {statistics.median(times):.3f} s"
    )


def median_seconds(command: list[str], runs: int = 7) -> float:
    subprocess.run(command, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [200, 1000]
    netplan = shutil.which("netplan", path="/usr/sbin:/usr/bin:/sbin")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for renderer in RENDERERS:
                profile = Path(tmp) / f"big{size}-{renderer}.toml"
                text = big_profile(size, renderer)
                profile.write_text(text)
                out = Path(tmp) / f"out{size}-{renderer}"
                command = [sys.executable, "-m", "kvmbridge", "render", str(profile), "-o", str(out)]
                line = f"{size:5d} bridges ({2 * size} ports, {size} networks) {renderer:<9}: "
                line += f"load+render {in_process(text):.3f} s; render -o median {median_seconds(command):.3f} s"
                if renderer == "netplan" and netplan is not None:
                    (out / "etc/netplan/60-kvmbridge.yaml").chmod(0o600)
                    generate = [netplan, "generate", "--root-dir", str(out)]
                    line += f"; netplan generate of the same bridges {median_seconds(generate, 3):.3f} s"
                print(line)
                if renderer == "ifupdown":
                    print(f"{'':>5} {tree_write(text, Path(tmp) / f'tree{size}')}")


if __name__ == "__main__":
    main()
