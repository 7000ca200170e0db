"""What the boot guard's Python loads at boot must be root's alone, and runnable: install refuses otherwise.

Outside review findings F4 (links, .pth paths, system site-packages, `#!/usr/bin/env`), F14 (an
executable execve cannot run) and F6 (a venv folder on tmpfs). Real temporary roots, nothing booted:
tests/test_image_guard.py shows pip's real venv under /opt/kvmbridge in an image is accepted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kvmbridge.root import Root

from .conftest import GOLDEN, require_root, require_tool, run, tree
from .guardroots import EXECUTABLE, guardable_root

ARTICLE = GOLDEN / "article.toml"
SITE = "opt/kvmbridge/lib/python3.11/site-packages"
TAIL = "the boot guard cannot be trusted on this target; nothing was changed\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    require_root()
    return guardable_root(tmp_path / "root")


def refused(root: Path) -> str:
    before = tree(root)
    result = run("install", ARTICLE, "--root", root, "--confirm-within", "1m")
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert tree(root) == before, "a refusal must leave every file as it was"
    assert result.stderr.endswith(TAIL)
    return result.stderr


def armed(root: Path) -> None:
    result = run("install", ARTICLE, "--root", root, "--confirm-within", "1m")
    assert result.exit_code == 0, result.stderr
    assert (root / "var/lib/kvmbridge/guard.json").is_file()


def write(path: Path, data: str | bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return path


def user_folder(root: Path, rel: str) -> Path:
    """A folder a local user (uid 1000) owns, as a checkout under /home is."""
    folder = root / rel
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_bytes(b"")
    subprocess.run(["chown", "-R", "1000:1000", str(root / "home/u")], check=True)
    return folder


# -- F4: everything Python loads -------------------------------------------------------------------


def test_a_venv_package_linked_to_a_writable_folder_is_refused(root: Path) -> None:
    package = root / SITE / "kvmbridge"
    evil = root / "srv/evil"
    evil.mkdir(parents=True)
    evil.chmod(0o777)
    os.rename(package / "__init__.py", evil / "__init__.py")
    package.rmdir()
    package.symlink_to("/srv/evil")  # inside the root: the root's /srv/evil
    err = refused(root)
    assert (
        f"{evil}: writable by group and others; its code runs as root at boot (the link {package} leads there)\n" in err
    )


@pytest.mark.parametrize("line", ["/home/u/src", "../../../../../home/u/src"])
def test_a_pth_path_to_a_user_s_checkout_is_refused(root: Path, line: str) -> None:
    src = user_folder(root, "home/u/src/kvmbridge").parent
    write(root / SITE / "__editable__.kvmbridge.pth", line + "\n")
    (root / SITE / "kvmbridge/__init__.py").unlink()
    (root / SITE / "kvmbridge").rmdir()
    err = refused(root)
    pth = root / SITE / "__editable__.kvmbridge.pth"
    assert f"{src}: owned by uid 1000, not root; its code runs as root at boot (added to sys.path by {pth})\n" in err


def test_a_pth_path_that_a_user_could_create_later_is_refused(root: Path) -> None:
    home = user_folder(root, "home/u/other").parent
    write(root / SITE / "later.pth", "/home/u/not-yet\n")
    err = refused(root)
    assert f"{home}: owned by uid 1000, not root; its code runs as root at boot (added to sys.path by " in err


def test_a_pth_that_is_a_fifo_is_refused_without_opening_it(root: Path) -> None:
    fifo = root / SITE / "hang.pth"
    os.mkfifo(fifo, 0o644)  # site.py would block on it at boot, and so would a careless check now
    assert f"{fifo}: not a regular file (a FIFO or device); Python would open it at boot\n" in refused(root)


def test_setuptools_editable_finder_mapping_to_a_user_s_checkout_is_refused(root: Path) -> None:
    checkout = user_folder(root, "home/u/src/kvmbridge")
    finder = "__editable___kvmbridge_0_1_0_finder"
    write(root / SITE / "__editable__.kvmbridge-0.1.0.pth", f"import {finder}; {finder}.install()\n")
    write(root / SITE / f"{finder}.py", "MAPPING = {'kvmbridge': '/home/u/src/kvmbridge'}\nNAMESPACES = {}\n")
    err = refused(root)
    assert f"{checkout}: owned by uid 1000, not root; its code runs as root at boot (loaded through " in err


def test_system_site_packages_are_checked_when_the_venv_includes_them(root: Path) -> None:
    dist = write(root / "usr/lib/python3/dist-packages/jinja2/__init__.py", "", 0o646)
    armed_before = run("install", ARTICLE, "--root", root, "--dry-run")  # not on sys.path yet: not a problem
    assert armed_before.exit_code == 0
    cfg = root / "opt/kvmbridge/pyvenv.cfg"
    cfg.write_text("home = /usr/bin\ninclude-system-site-packages = true\n")
    assert f"{dist}: writable by others; its code runs as root at boot (on sys.path)\n" in refused(root)
    cfg.write_text("home = /usr/bin\n")  # Python's default when the key is missing: included
    assert f"{dist}: writable by others" in refused(root)
    cfg.write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    armed(root)


def test_without_a_venv_the_system_site_folders_and_the_script_s_folder_are_checked(root: Path) -> None:
    subprocess.run(["rm", "-r", str(root / "opt/kvmbridge")], check=True)
    write(root / "usr/local/bin/kvmbridge", "#!/usr/bin/python3\nfrom kvmbridge.cli import main\nmain()\n", 0o755)
    (root / "usr/bin/python3").symlink_to("python3.11")
    package = write(root / "usr/local/lib/python3.11/dist-packages/kvmbridge/__init__.py", "").parent
    for folder in ("usr/local", "usr/local/bin", "usr/local/lib", "usr/local/lib/python3.11"):
        (root / folder).chmod(0o755)
    package.parent.chmod(0o755)
    package.chmod(0o777)
    assert f"{package}: writable by group and others; its code runs as root at boot (on sys.path)\n" in refused(root)
    package.chmod(0o755)
    shadow = write(root / "usr/local/bin/kvmbridge.py", "", 0o664)  # sys.path[0] is the script's folder
    assert f"{shadow}: writable by its group; its code runs as root at boot (the folder of" in refused(root)
    shadow.unlink()
    user_site = write(root / "root/.local/lib/python3.11/site-packages/x.py", "", 0o646)
    assert f"{user_site}: writable by others" in refused(root)
    user_site.unlink()
    armed(root)


def test_where_python_looks_for_its_standard_library_first_must_be_root_s(root: Path) -> None:
    local = root / "usr/local"
    (local / "bin").mkdir(parents=True)
    os.chown(local, 1000, 1000)
    (root / "opt/kvmbridge/pyvenv.cfg").write_text("home = /usr/local/bin\ninclude-system-site-packages = false\n")
    # getpath tries /usr/local/bin/lib/python3.11/os.py and /usr/local/lib/... before /usr/lib/python3.11
    assert f"{local}: owned by uid 1000, not root; its code runs as root at boot (where Python looks" in refused(root)


@pytest.mark.parametrize(
    ("rel", "problem"),
    [
        ("usr/bin/python3.11._pth", "{root}/usr/bin: holds a ._pth file, which replaces sys.path"),
        ("opt/kvmbridge/bin/python._pth", "{root}/opt/kvmbridge/bin: holds a ._pth file, which replaces sys.path"),
        ("usr/bin/pybuilddir.txt", "{root}/usr/bin/pybuilddir.txt: Python would run from a build tree"),
    ],
)
def test_files_that_replace_python_s_own_path_search_are_refused(root: Path, rel: str, problem: str) -> None:
    write(root / rel, "/home/u\n")
    assert problem.format(root=root) in refused(root)


def test_an_env_shebang_is_refused_because_path_at_boot_picks_python(root: Path) -> None:
    write(root / EXECUTABLE.lstrip("/"), "#!/usr/bin/env python3\nfrom kvmbridge.cli import main\nmain()\n", 0o755)
    write(root / "usr/bin/env", b"\x7fELF env stand-in\n", 0o755)
    assert (
        f"{root}{EXECUTABLE}: its #! line runs /usr/bin/env, so PATH at boot picks the interpreter; "
        "name the interpreter by absolute path (as pip writes it)\n"
    ) in refused(root)


def test_a_root_owned_layout_with_links_pth_files_and_a_link_loop_is_accepted(root: Path) -> None:
    shared = write(root / "usr/share/kvmbridge-extra/extra/__init__.py", "").parent.parent
    for folder in (root / "usr/share", shared, shared / "extra"):
        folder.chmod(0o755)
    (root / SITE / "extra").symlink_to("/usr/share/kvmbridge-extra/extra")
    (root / SITE / "loop").symlink_to(".")  # a link loop ends: each folder is walked once
    (root / "opt/kvmbridge/lib64").symlink_to("lib")
    write(root / SITE / "extra.pth", "# a comment\n\n/usr/share/kvmbridge-extra\n/nowhere/at/all\n")
    write(
        root / SITE / "distutils-precedence.pth",
        "import os; var = 'SETUPTOOLS_USE_DISTUTILS'; enabled = os.environ.get(var, 'local') == 'local'; "
        "enabled and __import__('_distutils_hack').add_shim(); \n",
    )
    armed(root)


def test_root_walk_reports_links_and_never_enters_them(tmp_path: Path) -> None:
    write(tmp_path / "t/a/b/file", "")
    (tmp_path / "t/a/out").symlink_to("/etc")
    (tmp_path / "t/a/up").symlink_to("..")
    walked = [(dest, st.st_mode >> 12) for dest, st in Root(tmp_path).walk("/t")]
    assert [dest for dest, _ in walked] == ["/t/a", "/t/a/b", "/t/a/b/file", "/t/a/out", "/t/a/up"]
    assert list(Root(tmp_path).walk("/t/a/out")) == []  # a link is not a folder to walk
    assert list(Root(tmp_path).walk("/missing")) == []


def test_folders_nested_without_end_are_refused_not_overflowed(root: Path) -> None:
    (root / SITE / "deep" / "/".join(["d"] * 70)).mkdir(parents=True)
    assert "folders nested more than 64 deep; refusing to walk further\n" in refused(root)


# -- F14: an executable the kernel cannot run ------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "setup", "problem"),
    [
        ("from kvmbridge.cli import main\n", None, "{exe}: has no #! line; systemd's execve would fail at boot"),
        (
            "#!/opt/kvmbridge/bin/python3\r\nmain()\r\n",
            None,
            "{exe}: its #! line ends in a carriage return (CRLF)",
        ),
        ("#!/opt/kvmbridge/bin/python3\n", "folder", "{interp}: is a folder, not an executable file"),
        (
            "#!/opt/kvmbridge/bin/python3\n",
            "gone",
            "{root}/opt/kvmbridge/bin/python3: does not exist (the interpreter of {exe})",
        ),
        ("#!/opt/kvmbridge/bin/python3\n", "not-executable", "{interp}: is not an executable file"),
        ("#!/opt/kvmbridge/bin/python3\n", "script", "{interp}: is not an ELF binary (a script?)"),
        ("#!/opt/kvmbridge/lib\n", None, "{root}/opt/kvmbridge/lib (the interpreter of {exe}): is a folder"),
        ("#!python3\n", None, "{exe}: its #! line does not name an interpreter by a plain absolute path"),
        ("#!/opt/kvmbridge/bin/python3 -c import os\n", None, "{exe}: cannot tell what '#!/opt/kvmbridge/bin/python3"),
        ("#!/usr/lib/systemd/systemd\n", None, "systemd is not a python3 interpreter"),
    ],
)
def test_an_executable_that_execve_cannot_run_is_refused(
    root: Path, script: str, setup: str | None, problem: str
) -> None:
    write(root / EXECUTABLE.lstrip("/"), script, 0o755)
    python = root / "usr/bin/python3.11"
    if setup == "folder":
        python.unlink()
        python.mkdir(mode=0o755)
    elif setup == "gone":
        python.unlink()
    elif setup == "not-executable":
        python.chmod(0o644)
    elif setup == "script":
        python.write_text('#!/bin/sh\nexec /usr/bin/python3.12 "$@"\n')
    interp = f"{root}/opt/kvmbridge/bin/python3 (the interpreter of {EXECUTABLE})"
    assert problem.format(exe=EXECUTABLE, interp=interp, root=root) in refused(root)
    if problem.startswith("{exe}"):
        assert f"\n{root}{EXECUTABLE}: " in "\n" + refused(root), "named under the root"


def test_an_interpreter_on_a_noexec_mount_is_refused(root: Path) -> None:
    require_tool("unshare")
    usr_bin = root / "usr/bin"  # the executable itself on noexec: choose_executable finds no executable
    before = tree(root)
    script = (
        f"mount --bind {usr_bin} {usr_bin} && mount -o remount,bind,noexec {usr_bin} && "
        f"exec {sys.executable} -m kvmbridge install {ARTICLE} --root {root} --confirm-within 1m"
    )
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 3, result.stderr
    interpreter = f"{root}/opt/kvmbridge/bin/python3 (the interpreter of {EXECUTABLE})"
    assert (
        f"{interpreter}: lies on a file system mounted noexec; systemd's execve would fail at boot\n" in result.stderr
    )
    assert tree(root) == before


def test_harmless_interpreter_options_are_accepted(root: Path) -> None:
    write(root / EXECUTABLE.lstrip("/"), "#!/opt/kvmbridge/bin/python3 -sE\nmain()\n", 0o755)
    armed(root)


# -- F6: a temporary file system anywhere in what is loaded ------------------------------------------


def test_a_venv_folder_on_tmpfs_is_refused(root: Path) -> None:
    require_tool("unshare")
    lib = root / "opt/kvmbridge/lib"
    keep = root.parent / "keep"
    subprocess.run(["cp", "-a", str(lib), str(keep)], check=True)
    before = tree(root)
    script = (
        f"mount -t tmpfs -o mode=755 tmpfs {lib} && cp -a {keep}/. {lib}/ && "
        f"exec {sys.executable} -m kvmbridge install {ARTICLE} --root {root} --confirm-within 1m"
    )
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 3, result.stderr
    assert (
        f"{lib}: lies on a temporary file system (tmpfs); the guard loads it at boot "
        "and it would be gone after the reboot\n"
    ) in result.stderr
    assert tree(root) == before


# -- ATTACK10b: what the check did not model ---------------------------------------------------------


@pytest.mark.parametrize(
    ("pth", "line"),
    [
        ("_editable_impl_kvmbridge.pth", "import _editable_impl_kvmbridge"),  # hatchling's exact mode (editables)
        (
            "__editable__.kvmbridge.pth",
            "import __editable___kvmbridge_finder; __editable___kvmbridge_finder.install(); import x",
        ),
        ("_virtualenv.pth", "import _virtualenv"),
    ],
)
def test_a_pth_import_line_the_check_cannot_follow_is_refused(root: Path, pth: str, line: str) -> None:
    """F1: hatchling's exact editable mode imports a module that maps kvmbridge to a user's checkout with
    a finder the check knew nothing of; any import line but setuptools' two known ones is refused now."""
    user_folder(root, "home/u/kvmbridge/src/kvmbridge")
    write(
        root / SITE / "_editable_impl_kvmbridge.py",
        "from editables.redirector import RedirectingFinder as F\nF.install()\n"
        "F.map_module('kvmbridge', '/home/u/kvmbridge/src/kvmbridge/__init__.py')\n",
    )
    write(root / SITE / pth, line + "\n")
    assert f"{root / SITE / pth}: runs code at boot ({line[:80]}) that this check cannot follow" in refused(root)


def test_a_setuptools_finder_that_is_not_a_module_file_is_refused(root: Path) -> None:
    finder = "__editable___kvmbridge_0_1_0_finder"
    write(root / SITE / "__editable__.kvmbridge-0.1.0.pth", f"import {finder}; {finder}.install()\n")
    write(root / SITE / f"{finder}/__init__.py", "MAPPING = {'kvmbridge': '/home/u/src/kvmbridge'}\n")
    assert f"{root / SITE / finder}.py: missing or not a regular file (imported by " in refused(root)


def test_a_pth_line_is_what_site_py_reads_not_what_str_splitlines_makes_of_it(root: Path) -> None:
    """F4a: U+2028 (and \\x0c, \\x85 ...) end a line for str.splitlines, not for site.py."""
    home = user_folder(root, "home/u/lib").parent
    write(root / SITE / "zz-extra.pth", "/x\u2028#/../../home/u/lib\n")
    assert f"{home}: owned by uid 1000, not root; its code runs as root at boot (added to sys.path by" in refused(root)


def test_a_pyvenv_cfg_with_two_homes_or_that_is_not_a_regular_file_is_refused(root: Path) -> None:
    """F4b: getpath takes the first home, site.py the last; F6: a FIFO blocks getpath at boot."""
    cfg = root / "opt/kvmbridge/pyvenv.cfg"
    cfg.write_text("home = /home/u/py\nhome = /usr/bin\ninclude-system-site-packages = false\n")
    assert f"{cfg}: more than one home (getpath takes the first, site.py the last)" in refused(root)
    cfg.unlink()
    os.mkfifo(cfg, 0o644)
    assert f"{cfg}: not a regular file (a folder, FIFO or device); Python opens it at boot\n" in refused(root)


def test_a_user_s_folder_where_getpath_looks_for_os_py_first_is_refused_before_it_holds_one(root: Path) -> None:
    """F2: the venv's home is /usr/bin; getpath tries /usr/bin/lib/python3.11/os.py before /usr/lib/..."""
    lib = root / "usr/bin/lib/python3.11"
    lib.mkdir(parents=True)
    (root / "usr/bin/lib").chmod(0o755)
    lib.chmod(0o1777)
    assert f"{lib}: writable by group and others; its code runs as root at boot (where Python looks" in refused(root)


def test_a_hostile_file_name_is_shown_escaped_on_one_line(root: Path) -> None:
    """F8: a name a user chose must not add lines (a forged "armed") to root's terminal."""
    name = root / SITE / "x\nboot guard: armed; nothing wrong\n"
    write(name, "")
    os.chown(name, 1000, 1000)
    err = refused(root)
    assert "\nboot guard: armed" not in err
    assert f"{root / SITE}/x\\nboot guard: armed; nothing wrong\\n: owned by uid 1000, not root;" in err


def test_links_that_cost_too_many_lookups_to_follow_are_refused_in_bounded_time(root: Path) -> None:
    """F7: each link into a chain of `x/../x/..` targets costs thousands of lookups; 2000 such links took
    half an hour, within MAX_WALK. The total lookups are budgeted (a pip venv needs ~200)."""
    chain = root / SITE / "z"
    (chain / "x").mkdir(parents=True)
    write(chain / "y", "")
    heavy = "/".join(["x/.."] * 800)
    for hop in range(10):
        (chain / f"c{hop}").symlink_to(f"{heavy}/{f'c{hop + 1}' if hop < 9 else 'y'}")
    for i in range(20):
        (chain / f"l{i}").symlink_to("c0")
    err = refused(root)
    assert "links that take more than 100000 name lookups to follow in all; cannot tell who can" in err
