"""KB101 finds SSH sessions without $SSH_CONNECTION (`sudo` and Ansible's become drop it): the
established connections on a port an sshd process listens on, in a namespace where a listener
named sshd holds real TCP sessions from the LAN (outside review ATTACK14b F15)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import require_root, require_tool, write_profile
from .leftovers import owned_dir, remove_owned_dir
from .netns import GATEWAY, HOST6_ADDRESS, Lab

HOST = "198.51.100.2"

# A listener whose process name (comm, what ss -p shows) is NAME, holding every connection it accepts.
LISTENER = """
import ctypes, socket, sys, time
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[2])))
s.listen(8)
held = []
while True:
    held.append(s.accept())
"""

# The LAN side: one connection per target, kept open until killed.
CLIENT = """
import socket, sys, time
held = []
for target in sys.argv[1:]:
    address, port, scope = target.split(",")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family)
    sock.connect((address, int(port), 0, socket.if_nametoindex(scope)) if scope else (address, int(port)))
    held.append(sock)
print("connected", flush=True)
time.sleep(3600)
"""


@pytest.fixture(scope="module")
def sessions_host() -> Iterator[tuple[Lab, str]]:
    """A host (eth0, IPv4 + IPv6) whose "sshd" listens on 2222 with three sessions (IPv4, IPv6,
    link-local) and whose "nginx" on 2223 holds one more; returns the lab and eth0's link-local."""
    require_root()
    require_tool("ip")
    require_tool("ss")
    with Lab() as lab:
        lab.wire([("eth0", True)])
        lab.sh(lab.host, f"ip link set eth0 up && ip addr add {HOST}/24 dev eth0 && ip route add default via {GATEWAY}")
        lab.sh(lab.host, f"ip -6 addr add {HOST6_ADDRESS}/64 dev eth0 nodad")
        for name, port in (("sshd", "2222"), ("nginx", "2223")):
            lab.children.append(
                subprocess.Popen(["ip", "netns", "exec", lab.host, sys.executable, "-c", LISTENER, name, port])
            )
        link_local = ""
        for _ in range(100):  # the listeners bind, eth0's link-local leaves DAD
            shown = lab.ip_json(lab.host, "-6 addr show dev eth0 scope link")
            local = [a for a in (shown[0]["addr_info"] if shown else []) if "local" in a]
            listening = lab.sh(lab.host, "ss -Htln").stdout
            if local and not local[0].get("tentative") and ":2222" in listening and ":2223" in listening:
                link_local = local[0]["local"]
                break
            time.sleep(0.1)
        assert link_local, "listeners and link-local address ready"
        targets = [f"{HOST},2222,", f"{HOST6_ADDRESS},2222,", f"{link_local},2222,lanbr", f"{HOST},2223,"]
        client = subprocess.Popen(
            ["ip", "netns", "exec", lab.lan, sys.executable, "-c", CLIENT, *targets], stdout=subprocess.PIPE
        )
        lab.children.append(client)
        assert client.stdout is not None and client.stdout.readline() == b"connected\n"
        yield lab, link_local


def in_host(lab: Lab, *command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SSH_CONNECTION"}  # as under sudo's env_reset
    return subprocess.run(
        ["ip", "netns", "exec", lab.host, *command], capture_output=True, text=True, check=False, env=env
    )


def test_every_session_on_a_port_sshd_listens_on_is_found(sessions_host: tuple[Lab, str]) -> None:
    lab, link_local = sessions_host
    code = "from kvmbridge.livehost import read_ssh_sessions; import json; print(json.dumps(read_ssh_sessions()))"
    result = in_host(lab, sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    sessions = [s.split() for s in json.loads(result.stdout)]
    assert sorted((local, port) for _, _, local, port in sessions) == sorted(
        [(f"::ffff:{HOST}", "2222"), (HOST6_ADDRESS, "2222"), (f"{link_local}%eth0", "2222")]
    ), "three sessions on sshd's port; nginx's on 2223 is no SSH session"
    assert f"::ffff:{GATEWAY}" in [peer for peer, *_ in sessions]


def test_kb101_fires_under_sudo_without_ssh_connection(tmp_path: Path, sessions_host: tuple[Lab, str]) -> None:
    """The README's `sudo kvmbridge install`: no SSH_CONNECTION, the bridge takes eth0 with DHCP and
    a new MAC, so every session on eth0's addresses is cut; validate --root / says so and exits 3."""
    lab, _ = sessions_host
    profile = write_profile(
        tmp_path, '[bridges.br0]\nports = ["eth0"]\nipv4 = { method = "dhcp" }\n', name="kvm01.toml"
    )
    result = in_host(lab, sys.executable, "-m", "kvmbridge", "validate", str(profile), "--root", "/", "--json")
    kb101 = [f for f in json.loads(result.stdout)["findings"] if f["id"] == "KB101"]
    assert result.returncode == 3, result.stderr
    assert [(f["severity"], f["subject"]) for f in kb101] == [("error", "eth0")] * 3, kb101
    messages = " ".join(f["message"] for f in kb101)
    assert f"the SSH session from ::ffff:{GATEWAY} arrives on {HOST} at eth0" in messages
    assert f"arrives on {HOST6_ADDRESS} at eth0" in messages


def test_a_bridge_that_keeps_every_session_address_is_quiet(tmp_path: Path, sessions_host: tuple[Lab, str]) -> None:
    lab, _ = sessions_host
    profile = write_profile(
        tmp_path,
        '[bridges.br0]\nports = ["eth0"]\nhwaddress = "eth0"\n'
        f'ipv4 = {{ method = "static", address = "{HOST}/24", gateway = "{GATEWAY}" }}\n'
        f'ipv6 = {{ method = "static", address = "{HOST6_ADDRESS}/64" }}\n',
        name="kvm01.toml",
    )
    result = in_host(lab, sys.executable, "-m", "kvmbridge", "validate", str(profile), "--root", "/", "--json")
    assert [f for f in json.loads(result.stdout)["findings"] if f["id"] == "KB101"] == [], result.stdout


def test_a_user_who_cannot_see_sshd_is_told_so(tmp_path: Path, sessions_host: tuple[Lab, str]) -> None:
    """Without root, ss -p shows no other user's process: the sessions cannot be found, and the
    report says so instead of passing in silence."""
    lab, _ = sessions_host
    folder = owned_dir(Path(tempfile.gettempdir()), "kvmbridge-nobody-")  # tmp_path is root's alone
    try:
        folder.chmod(0o755)
        profile = write_profile(folder, '[bridges.br0]\nports = ["eth0"]\nipv4 = { method = "dhcp" }\n')
        profile.chmod(0o644)
        as_nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m")
        result = in_host(lab, *as_nobody, "kvmbridge", "validate", str(profile), "--root", "/", "--json")
    finally:
        remove_owned_dir(folder)
    report = json.loads(result.stdout)
    assert "findings" in report, (result.stdout, result.stderr)
    assert not [f for f in report["findings"] if f["id"] == "KB101"]
    assert any("not root, so ss cannot see" in note for note in report["safety_notes"]), report
