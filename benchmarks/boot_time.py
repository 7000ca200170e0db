"""Boot to a forwarding bridge: per golden profile, from systemd-nspawn's start to the uplink bridge
forwarding (a port in state "forwarding") with the host's address on it, seen from outside the
container every few milliseconds; beside it the same profile with bridge-utils' default timers
(the rendered `bridge_fd 0` and `bridge_maxwait 0` lines removed), to show what those two lines buy.
Also the time until systemd reports the boot finished (networking.service waits for ifup).

Needs root, debootstrap and systemd-nspawn (the image lab of tests/imagelab.py; first run builds it).
Usage: python benchmarks/boot_time.py [RUNS] [CASE ...]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import GOLDEN_CASES  # noqa: E402
from tests.imagelab import Lan, Machine, image, install, readdressed_profile  # noqa: E402
from tests.netns import uplink  # noqa: E402

DEFAULT_TIMERS = ("bridge_fd 0", "bridge_maxwait 0")


def _json(argv: list[str]) -> list[dict[str, object]]:
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    return json.loads(out) if out.strip() else []


def _forwarding_with_address(netns: str, bridge: str, dhcp: bool) -> bool:
    ports = _json(["bridge", "-n", netns, "-j", "link", "show"])
    if not any(p.get("master") == bridge and p.get("state") == "forwarding" for p in ports):
        return False
    links = _json(["ip", "-n", netns, "-j", "-4", "addr", "show", "dev", bridge])
    addresses = [a for link in links for a in link.get("addr_info", [])]  # type: ignore[attr-defined]
    return any(a.get("dynamic") for a in addresses) if dhcp else bool(addresses)


def boot_once(case: str, defaults: bool, work: Path) -> tuple[float, float]:
    """Seconds from nspawn's start to the bridge forwarding with its address, and to boot finished."""
    path, profile = readdressed_profile(case, work)
    up = uplink(profile)
    dhcp = profile.bridges[up].ipv4.method == "dhcp"
    ports = {port: name == up for name, bridge in profile.bridges.items() for port in bridge.ports}
    with Lan() as lan:
        if dhcp:
            lan.start_dhcp()
        with Machine(lan, ports, image("base")) as machine:
            install(path, machine.root)
            if defaults:
                interfaces = machine.root / "etc/network/interfaces"
                lines = interfaces.read_text().splitlines(keepends=True)
                interfaces.write_text("".join(line for line in lines if line.strip() not in DEFAULT_TIMERS))
            machine.start()
            forwarding = None
            deadline = time.monotonic() + 120
            while forwarding is None and time.monotonic() < deadline:
                if _forwarding_with_address(machine.netns, up, dhcp):
                    forwarding = time.monotonic() - machine.started_at
                else:
                    time.sleep(0.005)
            if forwarding is None:
                raise SystemExit(f"{case}: {up} never forwarded with its address: {machine.console()[-2000:]}")
            machine.wait_booted(180)
            booted = time.monotonic() - machine.started_at
            failed = machine.failed_units()
            if failed:
                raise SystemExit(f"{case}: failed units {failed}")
            return forwarding, booted


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cases = sys.argv[2:] or GOLDEN_CASES
    image("base")  # build (or find) the cached image before timing anything
    print(f"median of {runs} boots; seconds from systemd-nspawn start (Debian 12 image, systemd 252)")
    print(f"{'profile':<16}{'fd 0 + maxwait 0: fwd':>24}{'booted':>9}{'bridge-utils defaults: fwd':>29}{'booted':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            row = []
            for defaults in (False, True):
                samples = [boot_once(case, defaults, Path(tmp)) for _ in range(runs)]
                row += [statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)]
            print(f"{case:<16}{row[0]:>24.2f}{row[1]:>9.2f}{row[2]:>29.2f}{row[3]:>9.2f}")


if __name__ == "__main__":
    main()
