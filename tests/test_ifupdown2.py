"""ifupdown2's own parser (`ifup --syntax-check`; ifupdown2 3.0's ifquery has no such option) on our
ifupdown2 files, inside the image-lab variant that has ifupdown2 (it conflicts with ifupdown, so it
cannot be installed beside the rest of the suite)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import GOLDEN, RENDERER_CASES, require_root, require_tool
from .imagelab import Image, chroot, kvmbridge_image, unmount

# A private /run inside the chroot's own mount namespace: ifupdown2 takes its lock there.
PRIVATE_RUN = "mount -t tmpfs tmpfs /run && mkdir -p /run/network && "


@pytest.fixture(scope="module")
def ifupdown2_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_root()
    for tool in ("debootstrap", "unshare", "mount"):
        require_tool(tool)
    image: Image = kvmbridge_image("ifupdown2")
    merged = image.mount(tmp_path_factory.mktemp("ifupdown2"))
    yield merged
    unmount(merged)


def test_ifupdown2_syntax_check_accepts_every_ifupdown2_golden(ifupdown2_root: Path) -> None:
    cases = RENDERER_CASES["ifupdown2"]
    assert cases
    for case in cases:
        shutil.copy(GOLDEN / case / "etc/network/interfaces", ifupdown2_root / f"tmp/{case}.interfaces")
    out = chroot(
        ifupdown2_root,
        PRIVATE_RUN + 'for f in /tmp/*.interfaces; do echo "== $f"; ifup --syntax-check -a -i "$f" 2>&1; done',
    )
    assert out.count("== ") == len(cases), out
    assert "error" not in out.lower() and "warning" not in out.lower(), out


def test_validate_inside_an_ifupdown2_host_runs_ifupdown2s_check(ifupdown2_root: Path) -> None:
    shutil.copy(GOLDEN / "ifupdown2-two-bridges.toml", ifupdown2_root / "tmp/host.toml")
    out = chroot(ifupdown2_root, PRIVATE_RUN + "/opt/kvmbridge/bin/kvmbridge validate /tmp/host.toml")
    assert "checked: profile rules, ifupdown2 (ifup --syntax-check), libvirt RelaxNG (network.rng)" in out, out


def test_ifupdown2_syntax_check_rejects_a_broken_file(ifupdown2_root: Path) -> None:
    broken = (
        (GOLDEN / "ifupdown2-article/etc/network/interfaces").read_text().replace("bridge-stp no", "bridge-stp maybe")
    )
    (ifupdown2_root / "tmp/broken.interfaces").write_text(broken)
    out = chroot(ifupdown2_root, PRIVATE_RUN + "ifup --syntax-check -a -i /tmp/broken.interfaces 2>&1 || echo exit=$?")
    assert 'bridge-stp: invalid value "maybe"' in out and "exit=1" in out, out
