"""What the boot guard costs the boot: nothing on the critical path.

Boots the article's profile (on the lab LAN) in a Debian 12 image under
systemd-nspawn three ways: no guard, `--confirm-within 10m`, and
`--confirm-within 10m --auto-confirm`. Prints, per way, the median seconds
from nspawn's start until systemd reports the boot finished, systemd's own
"reached after" figure for the default target, and whether any kvmbridge unit
is on `systemd-analyze critical-chain`; then the chains themselves for the
auto-confirm boot, and when its check confirmed.

Needs root, debootstrap and systemd-nspawn (the image lab of tests/imagelab.py).
Usage: python benchmarks/guard_boot.py [RUNS]
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.bootcheck import profile_toml  # noqa: E402
from tests.imagelab import Lan, Machine, kvmbridge_image  # noqa: E402
from tests.netns import readdress  # noqa: E402

WAYS = {
    "no guard": [],
    "guard 10m": ["--confirm-within", "10m"],
    "guard + auto": ["--confirm-within", "10m", "--auto-confirm"],
}


def boot_once(lan: Lan, profile: Path, extra: list[str]) -> tuple[float, float | None, str, str]:
    with Machine(lan, {"eth0": True}, kvmbridge_image()) as machine:
        (machine.root / "root/article.toml").write_text(profile.read_text())
        command = [sys.executable, "-m", "kvmbridge", "install", str(machine.root / "root/article.toml")]
        subprocess.run([*command, "--root", str(machine.root), *extra], check=True, capture_output=True)
        started = time.monotonic()
        machine.start()
        machine.wait_booted()
        booted = time.monotonic() - started
        analyze = machine.run("systemd-analyze time --no-pager", check=False).stdout
        found = re.search(r"(?:graphical|multi-user)\.target reached after ([0-9.]+)(ms|s)", analyze)
        reached = None if found is None else float(found[1]) / (1000 if found[2] == "ms" else 1)
        chain = machine.run("systemd-analyze critical-chain --no-pager", check=False).stdout
        check = ""
        if "--auto-confirm" in extra:
            deadline = time.monotonic() + 60
            while (machine.root / "var/lib/kvmbridge/guard.json").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            check = machine.run(
                "systemd-analyze critical-chain --no-pager kvmbridge-guard-check.service; "
                "systemctl show -p ExecMainStartTimestampMonotonic -p ExecMainExitTimestampMonotonic "
                "kvmbridge-guard-check.service",
                check=False,
            ).stdout
        return booted, reached, chain, check


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    kvmbridge_image()  # build (or find) the image before timing anything
    from kvmbridge.profile import load_profile

    with tempfile.TemporaryDirectory() as tmp, Lan() as lan:
        profile = Path(tmp) / "article.toml"
        profile.write_text(profile_toml(readdress(load_profile(REPO / "golden/article.toml"))))
        print(f"median of {runs} boots of golden/article.toml on the lab LAN (Debian 12 image, systemd-nspawn)")
        print(f"{'':<14}{'boot finished (s)':>19}{'default target (s)':>23}  kvmbridge on the critical chain")
        last: tuple[str, str] = ("", "")
        for way, extra in WAYS.items():
            samples = [boot_once(lan, profile, extra) for _ in range(runs)]
            booted = statistics.median(s[0] for s in samples)
            reached = [s[1] for s in samples if s[1] is not None]
            on_chain = any("kvmbridge" in s[2] for s in samples)
            shown = f"{statistics.median(reached):.2f}" if reached else "?"
            print(f"{way:<14}{booted:>19.2f}{shown:>23}  {'yes' if on_chain else 'no'}")
            last = (samples[-1][2], samples[-1][3])
        print("\nsystemd-analyze critical-chain (guard + auto-confirm):")
        print(last[0].rstrip())
        print("\nthe auto-confirm check's own chain (off the boot's; then its start and exit, monotonic µs):")
        print(last[1].rstrip())


if __name__ == "__main__":
    main()
