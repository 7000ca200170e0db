"""CLI contract: exit codes and the exact first line of every file-level error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kvmbridge import __version__

from .conftest import ARTICLE, GOLDEN, as_nobody, run, write_profile


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"kvmbridge, version {__version__}\n"


def test_missing_file(tmp_path: Path) -> None:
    result = run("render", tmp_path / "nope.toml")
    assert (result.exit_code, result.stderr) == (2, f"{tmp_path / 'nope.toml'}: no such file\n")


def test_directory(tmp_path: Path) -> None:
    result = run("render", tmp_path)
    assert (result.exit_code, result.stderr) == (2, f"{tmp_path}: is a directory, not a profile\n")


def test_empty_file(tmp_path: Path) -> None:
    path = write_profile(tmp_path, "  \n")
    result = run("validate", path)
    assert (result.exit_code, result.stderr) == (2, f"{path}: the profile is empty\n")


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "host.toml"
    path.write_bytes(b"\x7fELF\x00\x01")
    result = run("validate", path)
    assert (result.exit_code, result.stderr) == (2, f"{path}: is a binary file, not a TOML profile\n")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "host.toml"
    path.write_bytes(b'hostname = "k\xe9"\n')
    result = run("validate", path)
    assert (result.exit_code, result.stderr) == (2, f"{path}: is not UTF-8 text (byte 13)\n")


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write_profile(tmp_path, 'hostname = "kvm01"\n[bridges.br0\nports = []\n')
    result = run("validate", path)
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"{path}: line 2, column 13: TOML syntax error: Expected ']' at the end of a table declaration\n"
    )


def test_unreadable_file(tmp_path: Path) -> None:
    path = write_profile(tmp_path, ARTICLE)
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: drop to nobody
        tmp_path.chmod(0o755)
        result = as_nobody("render", path)
        assert (result.returncode, result.stderr) == (2, f"{path}: cannot read: Permission denied\n")
    else:
        denied = run("render", path)
        assert (denied.exit_code, denied.stderr) == (2, f"{path}: cannot read: Permission denied\n")


def test_no_traceback_and_nothing_written_on_error(tmp_path: Path) -> None:
    path = write_profile(tmp_path, ARTICLE.replace('gateway = "10.0.0.1"', 'gateway = "10.1.0.1"'))
    out = tmp_path / "out"
    result = run("render", path, "-o", out)
    assert result.exit_code == 2
    assert result.stderr == f"{path}: bridges.br0.ipv4.gateway: 10.1.0.1 is outside 10.0.0.2/24\n"
    assert not out.exists()


def test_render_refuses_to_write_into_the_live_root() -> None:
    result = run("render", GOLDEN / "article.toml", "-o", "/")
    assert result.exit_code == 2
    assert result.stderr == "/: render -o will not write into /; use `kvmbridge install`\n"


def test_init_prints_a_profile_that_validates(tmp_path: Path) -> None:
    result = run("init")
    assert result.exit_code == 0
    path = write_profile(tmp_path, result.stdout, name="kvm01.toml")
    check = run("validate", path)
    assert check.exit_code == 0, check.stderr
    rendered = run("render", path)
    article = run("render", GOLDEN / "article.toml")
    assert rendered.stdout.replace("kvm01.toml", "article.toml") == article.stdout


def test_validate_json(tmp_path: Path) -> None:
    import json

    result = run("validate", GOLDEN / "dhcp-hwaddress.toml", "--json")
    data = json.loads(result.stdout)
    assert data["valid"] is True and data["errors"] == []
    bad = write_profile(tmp_path, ARTICLE.replace("ports = [", "portz = ["))
    result = run("validate", bad, "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["errors"] == [f"{bad}: bridges.br0.portz: unknown key; did you mean 'ports'?"]


def test_dhcp_without_hwaddress_warns(tmp_path: Path) -> None:
    path = write_profile(
        tmp_path, '[bridges.br0]\nports = ["eth0"]\nipv4 = { method = "dhcp" }\n[sysctl]\nip_forward = false\n'
    )
    result = run("validate", path)
    assert result.exit_code == 0
    assert f"warning: KB201 {path}: bridges.br0.hwaddress: DHCP without hwaddress" in result.stderr


@pytest.mark.parametrize(("method", "why"), [("auto", "SLAAC without hwaddress"), ("dhcp", "DHCPv6 without hwaddress")])
def test_dynamic_ipv6_without_hwaddress_warns(tmp_path: Path, method: str, why: str) -> None:
    path = write_profile(
        tmp_path,
        f'[bridges.br0]\nports = ["eth0"]\nipv6 = {{ method = "{method}" }}\n[sysctl]\nip_forward = false\n',
    )
    result = run("validate", path)
    assert result.exit_code == 0
    assert f"warning: KB202 {path}: bridges.br0.hwaddress: {why}" in result.stderr
    assert 'set hwaddress = "eth0"' in result.stderr


def test_file_name_with_a_newline_stays_one_line(tmp_path: Path) -> None:
    path = write_profile(tmp_path, "", name="bad\nname.toml")
    result = run("validate", path)
    assert result.exit_code == 2
    assert result.stderr == f"{str(path)!r}: the profile is empty\n"


def test_profiles_are_toml_1_0_like_pythons_tomllib(tmp_path: Path) -> None:
    """The compiled parser (tomli) reads the dialect Python 3.11's tomllib reads: TOML 1.1's trailing commas
    and multi-line inline tables, `\\e` escapes and times without seconds stay syntax errors, whatever tomli's
    version (pyproject pins it below 2.4, the first with TOML 1.1)."""
    import tomllib

    cases = [
        '[bridges.br0]\nipv4 = { method = "dhcp", }\n',
        '[bridges.br0]\nipv4 = {\n  method = "dhcp"\n}\n',
        'hostname = "kvm\\e01"\n[bridges.br0]\n',
        "hostname = 07:32\n[bridges.br0]\n",
    ]
    for text in cases:
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            expected = str(exc)
        else:
            raise AssertionError(f"tomllib accepts {text!r}")
        path = write_profile(tmp_path, text)
        result = run("validate", path)
        assert result.exit_code == 2, (text, result.stdout)
        assert "TOML syntax error" in result.stderr, (text, result.stderr)
        assert expected.split(" (at ", maxsplit=1)[0] in result.stderr, (text, expected, result.stderr)
