"""The booted-image lab: Debian 12 roots built by debootstrap, booted under systemd-nspawn with systemd as PID 1.

Images are built once per package list and cached under `CACHE` (default
/var/cache/kvmbridge-lab, outside any checkout), keyed by a hash of the recipe;
every build holds one lock file, so concurrent builders wait instead of racing,
builds happen in a temporary folder renamed into place only when complete, and
a folder without its manifest is never used. Variants ("ifupdown2", "netplan")
are the base image with packages added or removed, cached the same way.
`kvmbridge_image(variant)` adds kvmbridge the way a user would get it: a venv
under /opt/kvmbridge with the wheel built from this checkout, installed with no
network inside the image (built once per test process).

Each `Machine` is a private copy of such an image, booted by
`systemd-nspawn --boot --register=no --keep-unit --network-namespace-path=...`.
Its network namespace is made by the harness before every boot, holding one
veth per profile port named exactly like the port (eth0, enp1s0, ...) so that
profiles boot unchanged; the peers live in a `Lan` namespace whose bridge
carries the gateway (198.51.100.1/24) and, when asked, dnsmasq. The namespace
is made afresh for every boot (with the same MAC addresses), as a reboot gives
a real host fresh NICs and default sysctls. nspawn itself runs in this
machine's namespaces (it is never started under `ip netns exec`), each boot in
a cgroup of its own, because PID 1 here is not systemd.

Nothing here is product code: tests import it, kvmbridge never does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kvmbridge.model import HostProfile
from kvmbridge.profile import load_profile

from .leftovers import claim, delete_namespace, owned_dir, remove_cgroup, remove_owned_dir
from .netns import (
    DHCP_RANGE,
    GATEWAY,
    GATEWAY6,
    HOST6_ADDRESS,
    HOST_ADDRESS,
    LAN_NET,
    ROUTER_LL,
    lab_extras6,
    ra_options,
    readdress,
    start_dnsmasq,
)

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"

CACHE = Path(os.environ.get("KVMBRIDGE_LAB_CACHE", "/var/cache/kvmbridge-lab"))
SUITE = "bookworm"
# Bump when the build steps change, so the old cache entries are not used.
RECIPE = 2
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "libpam-systemd",  # polkitd (libvirt-daemon-system) needs a logind; debootstrap cannot pick one
    "dbus",
    "udev",
    "procps",
    "ifupdown",
    "bridge-utils",
    "iproute2",
    "isc-dhcp-client",
    "iputils-ping",
    "libvirt-daemon-system",
    "libvirt-clients",
    "dnsmasq-base",
    "python3-venv",
    "openssh-server",
)
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REBOOT_EXIT = 133
PRUNE_AFTER = 3 * 24 * 3600
LAYER_PRUNE_AFTER = 6 * 3600
BOOT_TIMEOUT = 90.0


@dataclass(frozen=True)
class Variant:
    """The base image plus these changes, made with the image's own apt in a chroot."""

    install: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    enable: tuple[str, ...] = ()


VARIANTS: dict[str, Variant] = {
    "base": Variant(),
    "ifupdown2": Variant(install=("ifupdown2",), remove=("ifupdown",)),
    "netplan": Variant(install=("netplan.io",), remove=("ifupdown",), enable=("systemd-networkd.service",)),
}


def run(
    cmd: Sequence[str | Path], *, check: bool = True, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [str(c) for c in cmd]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{shlex.join(argv)} failed ({result.returncode}): {result.stderr.strip()[-2000:] or result.stdout[-2000:]}"
        )
    return result


# --- images ---------------------------------------------------------------------------------------------------------


def mirror() -> str:
    """The Debian mirror this machine's apt uses for bookworm (KVMBRIDGE_LAB_MIRROR overrides it)."""
    if env := os.environ.get("KVMBRIDGE_LAB_MIRROR"):
        return env
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for block in path.read_text().split("\n\n"):
            fields = dict(
                (k.strip().lower(), v.strip())
                for k, _, v in (line.partition(":") for line in block.splitlines() if not line.startswith("#"))
            )
            if fields.get("types") == "deb" and SUITE in fields.get("suites", "").split():
                return fields["uris"].split()[0]
    lists = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    return "http://deb.debian.org/debian"


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def base_key() -> str:
    return _key(RECIPE, SUITE, mirror(), sorted(BASE_PACKAGES))


def variant_key(name: str) -> str:
    variant = VARIANTS[name]
    if variant == Variant():
        return base_key()
    return _key(base_key(), variant.install, variant.remove, variant.enable)


def _safe_cache() -> Path:
    """The cache holds roots we chroot into as root: it must be ours alone."""
    CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
    for path in (CACHE, *CACHE.parents):
        st = path.lstat()
        # A sticky parent (/var/tmp) is fine: nobody else can move our folder out of it.
        shared = st.st_mode & 0o022 and (path == CACHE or not st.st_mode & 0o1000)
        if path.is_symlink() or st.st_uid != 0 or shared:
            raise AssertionError(f"{path}: the image cache must be a root-owned folder nobody else can write")
    return CACHE


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One lock for every build: another builder (any process) waits, then finds the image ready."""
    fd = os.open(_safe_cache() / ".build.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _entry(name: str, key: str) -> Path:
    return CACHE / f"{name}-{key}"


def _ready(name: str, key: str, probe: str = "usr/lib/systemd/systemd") -> Path | None:
    """The entry's root if it is complete (manifest with this key, `probe` inside), else None."""
    _safe_cache()
    entry = _entry(name, key)
    manifest = entry / "manifest.json"
    if entry.is_symlink() or not manifest.is_file():
        return None
    try:
        ok = json.loads(manifest.read_text()).get("key") == key
    except ValueError:
        ok = False
    if not ok or not (entry / "root" / probe).exists():
        return None
    with contextlib.suppress(OSError):
        os.utime(manifest)  # last use, for pruning
    return entry / "root"


def _publish(name: str, key: str, build: Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest last, then rename the finished build into place (atomic)."""
    (build / "manifest.json").write_text(json.dumps({"key": key, **manifest}, indent=2))
    entry = _entry(name, key)
    if entry.exists() or entry.is_symlink():  # an incomplete or mismatched entry: never used, replaced
        stale = CACHE / f".stale-{name}-{secrets.token_hex(4)}"
        entry.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    build.rename(entry)
    return entry / "root"


def _remove_build(path: Path) -> None:
    """rmtree, but never into a mount (a dead builder's /dev bind would take the host's device nodes)."""
    inside = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in sorted((m for m in inside if m == str(path) or m.startswith(f"{path}/")), reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)


def _new_build(name: str) -> Path:
    for old in CACHE.glob(f".build-{name}-*"):  # left by a builder that died; we hold the lock
        _remove_build(old)
    for old in CACHE.glob(".stale-*"):
        _remove_build(old)
    for old in CACHE.glob("*-*/manifest.json"):  # entries nobody used for a while (other recipes, old wheels)
        limit = LAYER_PRUNE_AFTER if old.parent.name.startswith("kvmbridge-") else PRUNE_AFTER
        if time.time() - old.stat().st_mtime > limit:
            stale = CACHE / f".stale-{secrets.token_hex(4)}"
            old.parent.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
    build = CACHE / f".build-{name}-{secrets.token_hex(4)}"
    build.mkdir()
    return build


def chroot(root: Path, script: str, *, timeout: float = 900, binds: Sequence[tuple[Path, str]] = ()) -> str:
    """Run `script` (sh) chrooted in `root` with /proc, /dev, /sys in a private mount namespace."""
    mounts = ['mount -t proc proc "$R/proc"', 'mount --rbind /dev "$R/dev"', 'mount -t sysfs sysfs "$R/sys"']
    for source, target in binds:
        mounts.append(f'mkdir -p "$R{target}" && mount --bind {shlex.quote(str(source))} "$R{target}"')
    outer = " && ".join(
        [*mounts, f'exec chroot "$R" /usr/bin/env -i PATH={CHROOT_PATH} HOME=/root LANG=C.UTF-8 sh -c "$S"']
    )
    env = {"PATH": CHROOT_PATH, "R": str(root), "S": "set -e\n" + script}
    return run(["unshare", "-m", "--propagation", "private", "sh", "-c", outer], timeout=timeout, env=env).stdout


def _debootstrap(build: Path) -> None:
    """debootstrap in two stages, dpkg told not to fsync in between (about a fifth faster).

    Both stages run in a private mount namespace: the /proc, /sys and /dev they
    mount in the target vanish with them, even when killed. The unsafe-io
    setting is removed before the image is published.
    """
    root = build / "root"
    debs = CACHE / "debs"
    debs.mkdir(exist_ok=True)
    private = ["unshare", "-m", "--propagation", "private"]
    first = ["debootstrap", "--foreign", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"]
    run([*private, *first, f"--cache-dir={debs}", SUITE, root, mirror()], timeout=1800)
    unsafe = root / "etc/dpkg/dpkg.cfg.d/kvmbridge-lab-unsafe-io"
    unsafe.write_text("force-unsafe-io\n")
    run(
        [*private, "chroot", root, "/debootstrap/debootstrap", "--second-stage"],
        timeout=1800,
        env={"PATH": CHROOT_PATH},
    )
    unsafe.unlink()
    # Nothing is masked or tuned for the container: the image boots as debootstrap made it.
    chroot(
        root,
        """
        apt-get clean
        : > /etc/machine-id
        echo kvmbridge-lab > /etc/hostname
        """,
    )


def base_image() -> Path:
    """The cached base root (read-only by convention: copy it, never boot it in place)."""
    key = base_key()
    if found := _ready("base", key):
        return found
    with _build_lock():
        if found := _ready("base", key):
            return found
        build = _new_build("base")
        _debootstrap(build)
        return _publish("base", key, build, {"suite": SUITE, "mirror": mirror(), "packages": sorted(BASE_PACKAGES)})


def variant_image(name: str) -> Path:
    """A cached variant root: the base plus VARIANTS[name]'s package changes."""
    if name not in VARIANTS:
        raise KeyError(f"unknown image variant {name!r}; known: {', '.join(VARIANTS)}")
    if name == "base":
        return base_image()
    key = variant_key(name)
    if found := _ready(name, key):
        return found
    base = base_image()
    with _build_lock():
        if found := _ready(name, key):
            return found
        build = _new_build(name)
        copy_tree(base, build / "root")
        variant = VARIANTS[name]
        script = ["export DEBIAN_FRONTEND=noninteractive", "apt-get update -qq"]
        if variant.install or variant.remove:
            changes = [*variant.install, *(f"{p}-" for p in variant.remove)]
            script.append(f"apt-get install -y -qq --no-install-recommends {' '.join(changes)}")
        script += [f"systemctl enable {unit}" for unit in variant.enable]
        script += ["apt-get clean", "rm -rf /var/lib/apt/lists/*"]
        chroot(build / "root", "\n".join(script))
        return _publish(name, key, build, {"base": base_key(), "variant": name, **VARIANTS[name].__dict__})


def copy_tree(source: Path, target: Path) -> Path:
    """A private copy of a root (reflinked where the file system can)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", "--reflink=auto", source, target], timeout=600)
    return target


@dataclass(frozen=True)
class Image:
    """A root made of read-only layers, top first: what a `Machine` mounts under its own writable layer."""

    layers: tuple[Path, ...]

    def mount(self, folder: Path) -> Path:
        """An overlay of the layers under a fresh upper layer in `folder`; returns the merged root.

        Overlayfs rather than a copy: a copy of the 370 MB image costs seconds per
        machine on a file system without reflinks. `unmount` undoes it.
        """
        upper, work, merged = folder / "upper", folder / "work", folder / "root"
        for d in (upper, work, merged):
            d.mkdir(parents=True)
        lower = ":".join(str(layer) for layer in self.layers)
        run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", merged])
        return merged


def unmount(merged: Path) -> None:
    mounted = subprocess.run(["mountpoint", "-q", str(merged)], check=False).returncode == 0
    if mounted and subprocess.run(["umount", str(merged)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(merged)], capture_output=True, check=False)


_templates: dict[str, Image] = {}
_session_dir: list[Path] = []


def _session() -> Path:
    if not _session_dir:
        _session_dir.append(owned_dir(_scratch(), "kvmbridge-lab-session-"))
        import atexit

        atexit.register(remove_owned_dir, _session_dir[0])
    return _session_dir[0]


def _scratch() -> Path:
    """Machines' writable layers live on disk (not tmpfs: a boot writes journals, venvs, leases)."""
    return Path(os.environ.get("KVMBRIDGE_LAB_SCRATCH", "/var/tmp"))


def wheelhouse() -> Path:
    """kvmbridge's wheel built from this checkout, and its dependencies' wheels, on the host (once per process).

    Dependencies come from CACHE/wheels (filled from the index once, under the
    build lock); the wheel is built without isolation when hatchling is here.
    """
    house = _session() / "wheels"
    if (house / ".done").exists():
        return house
    repo = Path(__file__).resolve().parents[1]
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-isolation"]
    run([sys.executable, "-m", "build", *isolation, "--wheel", "--outdir", house, repo], timeout=600)
    wheel = next(house.glob("kvmbridge-*.whl"))
    store = _safe_cache() / "wheels"
    # The image's python is Debian's 3.11: binary wheels for it, whatever python runs the tests.
    download = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--python-version=3.11",
        "--implementation=cp",
        "--platform=manylinux2014_x86_64",
        "--platform=manylinux_2_17_x86_64",
        "--platform=manylinux_2_28_x86_64",
        "--find-links",
        str(store),
    ]
    local = [*download, "--no-index", "--dest", str(house), str(wheel)]
    if run(local, check=False, timeout=600).returncode != 0:
        with _build_lock():
            store.mkdir(exist_ok=True)
            run([*download, "--dest", str(store), str(wheel)], timeout=600)
            for own in store.glob("kvmbridge-*.whl"):  # only dependencies are kept
                own.unlink()
        run(local, timeout=600)
    (house / ".done").touch()
    return house


def image(variant: str = "base") -> Image:
    """The cached variant alone (no kvmbridge inside)."""
    return Image((variant_image(variant),))


def kvmbridge_image(variant: str = "base") -> Image:
    """The variant plus a layer with kvmbridge in a venv at /opt/kvmbridge, as a user installs it.

    The wheel is built from this checkout and installed with pip's --no-index
    inside the image (no network there), once per test process.
    """
    if variant in _templates:
        return _templates[variant]
    house = wheelhouse()
    below = variant_image(variant)
    wheels = sorted((w.name, hashlib.sha256(w.read_bytes()).hexdigest()) for w in house.glob("*.whl"))
    key = _key(variant_key(variant), wheels)  # hatchling's wheels are reproducible: same sources, same key
    probe = "opt/kvmbridge/bin/kvmbridge"
    layer = _ready("kvmbridge", key, probe)
    if layer is None:
        with _build_lock():
            layer = _ready("kvmbridge", key, probe) or _build_kvmbridge_layer(key, below, house, wheels)
    _templates[variant] = Image((layer, below))
    return _templates[variant]


def _build_kvmbridge_layer(key: str, below: Path, house: Path, wheels: list[tuple[str, str]]) -> Path:
    build = _new_build("kvmbridge")
    merged = Image((below,)).mount(build / "mnt")
    try:
        chroot(
            merged,
            """
            python3 -m venv /opt/kvmbridge
            /opt/kvmbridge/bin/pip install --quiet --no-cache-dir --no-index --find-links /run/kvmbridge-wheels kvmbridge
            /opt/kvmbridge/bin/kvmbridge --help >/dev/null
            """,
            binds=[(house, "/run/kvmbridge-wheels")],
        )
    finally:
        unmount(merged)
    # Only what the venv install wrote; the bind's mount point is dropped.
    (build / "mnt/upper").rename(build / "root")
    shutil.rmtree(build / "root/run", ignore_errors=True)
    shutil.rmtree(build / "mnt", ignore_errors=True)
    return _publish("kvmbridge", key, build, {"below": str(below), "wheels": wheels})


# --- profiles -----------------------------------------------------------------------------------------------------


def readdressed_profile(case: str, folder: Path) -> tuple[Path, HostProfile]:
    """The golden profile's TOML with its static IPv4 moved onto the lab LAN, as `netns.readdress` does.

    Edited as text so the CLI reads a real profile file; the result must load to
    exactly `readdress(golden)`, so the edit cannot drift from the namespace tests.
    """
    text = (GOLDEN_DIR / f"{case}.toml").read_text()

    def move(match: re.Match[str]) -> str:
        line = match.group(0)
        line = re.sub(r'address = "[^"]*"', f'address = "{HOST_ADDRESS}/24"', line)
        line = re.sub(r'gateway = "[^"]*"', f'gateway = "{GATEWAY}"', line)
        line = re.sub(r"dns = \[[^]]*\]", f'dns = ["{GATEWAY}"]', line)
        if 'method = "static"' in line and "dns =" not in line:
            line = line.replace(" }", f', dns = ["{GATEWAY}"] }}')
        return line

    def move6(match: re.Match[str]) -> str:
        line = match.group(0)
        if 'method = "static"' not in line:
            return line
        line = re.sub(r'address = "[^"]*"', f'address = "{HOST6_ADDRESS}/64"', line)
        line = re.sub(
            r'gateway = "([^"]*)"',
            lambda m: f'gateway = "{ROUTER_LL if m[1].startswith("fe80:") else GATEWAY6}"',
            line,
        )
        line = re.sub(
            r"extra_addresses = \[([^]]*)\]",
            lambda m: f"extra_addresses = {json.dumps(list(lab_extras6(m[1].count(chr(34)) // 2)))}",
            line,
        )
        return re.sub(r"dns = \[[^]]+\]", f'dns = ["{GATEWAY6}"]', line)

    path = folder / f"{case}.toml"
    text = re.sub(r"(?m)^ipv6 = \{.*\}$", move6, text)
    path.write_text(re.sub(r"(?m)^ipv4 = \{.*\}$", move, text))
    profile = load_profile(path)
    assert profile == readdress(load_profile(GOLDEN_DIR / f"{case}.toml"))
    return path, profile


def install(profile_path: Path, root: Path, *options: str) -> None:
    """The real CLI from outside the image, as an admin installs into a mounted root."""
    result = subprocess.run(
        [sys.executable, "-m", "kvmbridge", "install", str(profile_path), "--root", str(root), *options],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --- the LAN --------------------------------------------------------------------------------------------------------


@dataclass
class Lan:
    """A namespace playing the LAN: bridge `lanbr` with the gateway address, optionally dnsmasq.

    `name` is the namespace (enter it with `nsenter --net=/run/netns/NAME`, or `Lan.sh`).
    """

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    name: str = ""
    work: Path = field(default_factory=lambda: owned_dir(Path(tempfile.gettempdir()), "kvmbridge-lan-"))
    namespaces: list[str] = field(default_factory=list)
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _router6: bool = False

    def __post_init__(self) -> None:
        self.name = f"kbl-{self.tag}-lan"

    def __enter__(self) -> Lan:
        self.add_namespace(self.name)
        self.sh("ip link add lanbr type bridge forward_delay 0 && ip link set lanbr up")
        self.sh(f"ip addr add {GATEWAY}/24 dev lanbr")
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for child in self.children:
            child.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(10)
        for ns in reversed(self.namespaces):
            delete_namespace(ns)
        remove_owned_dir(self.work)

    def add_namespace(self, ns: str) -> str:
        self.namespaces.append(ns)
        claim("netns", ns)
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    def sh(self, command: str, *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run(["nsenter", f"--net=/run/netns/{self.name}", "sh", "-c", command], check=check, timeout=timeout)

    def start_dhcp(self) -> None:
        """dnsmasq serving 198.51.100.100-150 on lanbr; a child of this process, so it is reaped, not left a zombie."""
        start_dnsmasq(
            self._enter(),
            self.work,
            self.children,
            "dnsmasq",
            f"--dhcp-range={DHCP_RANGE[0]},{DHCP_RANGE[1]},255.255.255.0,1h",
            f"--dhcp-option=3,{GATEWAY}",
            f"--log-facility={self.work / 'dnsmasq.log'}",
            "--dhcp-authoritative",
            "--no-ping",  # no 3 s ICMP probe of a new address before each first offer
        )

    def _enter(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.name}"]

    def add_ipv6_router(self) -> None:
        """The router's IPv6 addresses (GATEWAY6, fe80::1) on `lanbr`, without advertising anything yet."""
        if self._router6:
            return
        self._router6 = True
        self.sh("sysctl -qw net.ipv6.conf.all.forwarding=1")  # dnsmasq advertises no router lifetime otherwise
        self.sh(f"ip addr add {GATEWAY6}/64 dev lanbr nodad && ip addr add {ROUTER_LL}/64 dev lanbr nodad")

    def start_router_advertisements(self, dhcpv6: bool = False, reserve: dict[str, str] | None = None) -> None:
        """IPv6 on the LAN: the router holds GATEWAY6 and fe80::1 and advertises LAN6_NET (dnsmasq RA);
        with `dhcpv6` the managed flag and a DHCPv6 range, `reserve` mapping a MAC to a fixed address.
        A child of this process like `start_dhcp`'s dnsmasq."""
        self.add_ipv6_router()
        options = ra_options(dhcpv6, reserve)
        start_dnsmasq(
            self._enter(),
            self.work,
            self.children,
            "dnsmasq6",
            *options,
            f"--log-facility={self.work / 'dnsmasq6.log'}",
        )

    def leases(self) -> list[str]:
        path = self.work / "dnsmasq.leases"
        return path.read_text().splitlines() if path.exists() else []

    def ping(self, address: str) -> bool:
        return self.sh(f"ping -c 1 -W 2 {shlex.quote(address)}", check=False).returncode == 0

    def wait_ping(self, address: str, seconds: float = 20) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.ping(address):
                return True
            time.sleep(0.3)
        return False

    def guest(self, machine: Machine, bridge: str, address: str) -> str:
        """A VM: a namespace whose NIC's peer `vnet0` joins `bridge` inside the machine, like libvirt's tap."""
        ns = self.add_namespace(f"kbl-{secrets.token_hex(3)}-vm")
        run(["ip", "link", "add", "vnet0", "netns", machine.netns, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "-n", machine.netns, "link", "set", "vnet0", "master", bridge, "up"])
        run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        return ns


# --- machines -------------------------------------------------------------------------------------------------------


def _cgroup_roots() -> list[Path]:
    """The hierarchies nspawn and the container's systemd use: name=systemd (v1) and the unified one."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return [base]
    return [p for p in (base / "systemd", base / "unified") if (p / "cgroup.procs").exists()]


@dataclass
class Machine:
    """A private copy of an image, booted under systemd-nspawn, its NICs wired to `lan`.

    `ports` maps each NIC name inside to whether it joins the LAN bridge (an
    unjoined one is up on the LAN side but leads nowhere, like an unplugged
    segment). Call `boot()`, then `run()` inside; `reboot()` boots again.
    """

    lan: Lan
    ports: dict[str, bool]
    image: Image
    name: str = field(default_factory=lambda: f"kbl-{secrets.token_hex(3)}")
    root: Path = field(init=False)
    netns: str = ""
    macs: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    leader: int | None = None
    boots: int = 0
    started_at: float = 0.0
    log: Path = field(init=False)
    _dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self._dir = owned_dir(_scratch(), f"kvmbridge-{self.name}-")
        self.root = self.image.mount(self._dir)
        self.log = self._dir / "console.log"
        self.macs = {port: "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5)) for port in self.ports}

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.power_loss()
        unmount(self.root)
        remove_owned_dir(self._dir)

    # wiring
    def _wire(self) -> None:
        self.netns = f"{self.name}-b{self.boots}"
        self.lan.add_namespace(self.netns)
        for n, (port, joins) in enumerate(self.ports.items()):
            peer = f"{self.name[4:]}{self.boots % 10}{n}"
            run(
                [
                    "ip",
                    "link",
                    "add",
                    peer,
                    "netns",
                    self.lan.name,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    port,
                    "netns",
                    self.netns,
                ]
            )
            run(["ip", "-n", self.netns, "link", "set", port, "address", self.macs[port]])
            run(["ip", "-n", self.lan.name, "link", "set", peer, "up", *(["master", "lanbr"] if joins else [])])

    def _unwire(self) -> None:
        if self.netns:
            delete_namespace(self.netns)
            if self.netns in self.lan.namespaces:
                self.lan.namespaces.remove(self.netns)
            self.netns = ""

    def _cgroups(self) -> list[Path]:
        return [root / "kvmbridge-lab" / self.name for root in _cgroup_roots()]

    # lifecycle
    def start(self) -> None:
        """Start nspawn (systemd boots as PID 1); return once the container's PID 1 exists."""
        assert self.process is None, "already running"
        self._wire()
        for cgroup in self._cgroups():
            remove_cgroup(cgroup)
            claim("cgroup", str(cgroup))
            cgroup.mkdir(parents=True)
        join = " && ".join(f"echo $$ > {shlex.quote(str(c / 'cgroup.procs'))}" for c in self._cgroups())
        argv = [
            "systemd-nspawn",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--quiet",
            f"--machine={self.name}",
            f"--directory={self.root}",
            f"--network-namespace-path=/run/netns/{self.netns}",
            "--capability=CAP_NET_ADMIN",  # what --private-network grants: the namespace is the machine's alone
            "--link-journal=no",
            "--resolv-conf=off",
            "--timezone=off",
            "--console=read-only",
        ]
        self.started_at = time.monotonic()
        with self.log.open("ab") as log:
            log.write(f"=== boot {self.boots} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                ["sh", "-c", f'{join} && exec "$@"', "sh", *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # /proc/sys/net writable, as with --private-network: it is the machine's own namespace.
                env={"PATH": CHROOT_PATH, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"},
            )
        self.boots += 1
        self.leader = self._find_leader()

    def _find_leader(self, seconds: float = 20) -> int:
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited {self.process.returncode}: {self.console()[-3000:]}")
            for status in Path("/proc").glob("[0-9]*/status"):
                with contextlib.suppress(OSError):
                    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
                    if int(fields["PPid"]) == self.process.pid and fields["NSpid"].split()[-1] == "1":
                        return int(status.parent.name)
            time.sleep(0.05)
        raise AssertionError(f"no container PID 1 after {seconds}s: {self.console()[-3000:]}")

    def boot(self, timeout: float = BOOT_TIMEOUT) -> str:
        """Start and wait until systemd reports the boot finished; returns "running" or "degraded"."""
        self.start()
        return self.wait_booted(timeout)

    def wait_booted(self, timeout: float = BOOT_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"container exited {self.process.returncode} while booting: {self.console()[-3000:]}"
                )
            result = self.run(
                ["systemctl", "is-system-running", "--wait"], check=False, timeout=deadline - time.monotonic()
            )
            state = result.stdout.strip()
            if state in ("running", "degraded", "maintenance"):
                return state
            time.sleep(0.2)
        raise AssertionError(f"boot not finished after {timeout}s: {self.console()[-3000:]}")

    def run(
        self, command: str | Sequence[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run inside the booted container (all its namespaces); a string goes through sh -c."""
        assert self.leader is not None, "not booted"
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        enter = ["nsenter", "-t", str(self.leader), "-a", "/usr/bin/env", "-i", f"PATH={CHROOT_PATH}", "LANG=C.UTF-8"]
        return run([*enter, *argv], check=check, timeout=max(timeout, 1))

    def ip_json(self, args: str) -> Any:
        """`ip -j ARGS` in the machine's network namespace (the host's iproute2, from outside)."""
        return json.loads(run(["ip", "-n", self.netns, "-j", *args.split()]).stdout)

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.power_loss()
        self._stopped()
        return code

    def _stopped(self) -> None:
        self.process = None
        self.leader = None
        for cgroup in self._cgroups():
            remove_cgroup(cgroup)
        self._unwire()

    def reboot(self, timeout: float = BOOT_TIMEOUT) -> str:
        """`systemctl reboot` inside; nspawn must exit 133; boot again on the same root."""
        self.run(["systemctl", "reboot"], check=False)
        code = self.wait_exit(timeout)
        assert code == REBOOT_EXIT, f"nspawn exited {code} after systemctl reboot, not {REBOOT_EXIT}"
        return self.boot(timeout)

    def power_loss(self) -> None:
        """Pull the plug: SIGKILL the container's PID 1 (its whole PID namespace dies), then nspawn.

        nspawn is left a moment to reap PID 1 itself (it is its parent), so no
        zombie of the container outlives the machine.
        """
        if self.leader is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.leader, signal.SIGKILL)
        if self.process is not None:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(30)
        if self.netns:
            delete_namespace(self.netns)
        self._stopped()

    def console(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def failed_units(self) -> list[str]:
        out = self.run(["systemctl", "--failed", "--plain", "--no-legend", "--no-pager"]).stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]


__all__ = [
    "CACHE",
    "GATEWAY",
    "LAN_NET",
    "REBOOT_EXIT",
    "VARIANTS",
    "Image",
    "Lan",
    "Machine",
    "base_image",
    "image",
    "install",
    "kvmbridge_image",
    "readdressed_profile",
    "variant_image",
]


def main(argv: Sequence[str]) -> None:
    """Build (or find) the images before the tests, printing what each took: `python -m tests.imagelab [VARIANT...]`.

    .ci/run calls it so the cold build's time stands apart in CI's log.
    """
    for variant in argv or VARIANTS:
        started = time.monotonic()
        layers = kvmbridge_image(variant).layers if variant == "base" else (variant_image(variant),)
        print(f"image {variant}: {time.monotonic() - started:.1f} s ({', '.join(map(str, layers))})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
