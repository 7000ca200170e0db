"""Everything Python loads when the boot guard's executable runs, and whether only root can change it.

systemd starts the executable as root with a clean environment (the units
unset PYTHONPATH, PYTHONHOME and every other PYTHON* variable that
`DefaultEnvironment=` or `systemd.setenv=` could add; the working folder is `/`). The kernel reads its
`#!` line (one line of at most 255 bytes, split at the first blank; a `\\r` is
part of the name); the interpreter must be a Python ELF named by absolute
path, since `#!/usr/bin/env python3` lets PATH at boot pick it. Python then
builds `sys.path` the way 3.11's getpath and Debian's `site.py` do: the
script's own folder first; `pyvenv.cfg` beside the interpreter's name or one
folder up makes a venv (its `home` leads to the standard library,
`include-system-site-packages` adds the system's site folders and root's user
site); every site folder's `.pth` files add paths or run `import` lines.

All of that is checked as a superset (every site folder layout Debian or
upstream Python uses; every `python3.N` when the interpreter's name does not
say which) and
walked with `Root.walk`, never through a link: each link met is resolved
inside the root, every path it passes is checked, and a folder it reaches is
walked too. A path Python would use but which does not exist
yet must not be creatable by anyone but root. `import` lines of `.pth` files
run code that may load from anywhere (a meta-path finder): only setuptools'
two known lines are accepted, its distutils shim (imports from the checked
`sys.path`) and its editable finder, whose module names its source folders, so
those folders are walked as well; any other import line is refused.
Out of scope: the dynamic linker, shared libraries and `/etc` (the system
that systemd itself runs from).
"""

from __future__ import annotations

import ast
import posixpath
import re
import stat
from pathlib import Path

from .errors import KvmbridgeError, one_line
from .guard import SAFE_EXECUTABLE
from .guardwalk import Stop, TrustWalk, mount_of
from .root import Root

MAX_PROBLEMS = 8
ELF = b"\x7fELF"
# Interpreter options that only ever shrink what Python loads: the checked superset stays one.
HARMLESS_OPTIONS = re.compile(r"-[BEIOSsu]+")
PYTHON = re.compile(r"python3(?:\.([0-9]+))?")
# The only `import` lines of .pth files the check can follow: setuptools' editable finder (its MAPPING
# and NAMESPACES are read) and setuptools' distutils shim (it imports from the checked sys.path).
EDITABLE_LINE = re.compile(r"import (__editable___[A-Za-z0-9_]+_finder); \1\.install\(\)[ \t]*")
DISTUTILS_LINE = re.compile(
    r"import os; var = 'SETUPTOOLS_USE_DISTUTILS'; enabled = os\.environ\.get\(var, '(?:local|stdlib)'\) == 'local'; "
    r"enabled and __import__\('_distutils_hack'\)\.add_shim\(\); ?[ \t]*"
)
# Python reads .pth and pyvenv.cfg files with universal newlines: only these end a line (not str.splitlines's).
LANDMARKS = ("os.py", "os.pyc", "lib-dynload")
LINE_END = re.compile(r"\r\n|\r|\n")


def load_problems(root: Root, executable: str, real: Path) -> list[str]:
    """Why the code the guard's executable (`real`, resolved) loads at boot cannot be trusted (empty: fine)."""
    loads = _Loads(root)
    try:
        loads.python(executable, real)
    except Stop:  # the problem that stopped it is recorded
        pass
    except (KvmbridgeError, OSError) as exc:
        loads.problem(f"{real}: cannot check what it loads at boot: {exc}")
    loads.temporary(skip=real)
    problems = loads.problems[:MAX_PROBLEMS]
    if len(loads.problems) > MAX_PROBLEMS:
        problems.append(f"... and {len(loads.problems) - MAX_PROBLEMS} more such paths")
    return problems


class _Loads(TrustWalk):
    """The chain Python follows at boot; the walk and its budgets are TrustWalk's."""

    # -- the chain: executable, #! line, interpreter, venv, sys.path ---------------------------

    def python(self, executable: str, real: Path) -> None:
        interpreter, real_interp, version = self.interpreter(executable, real)
        venv = self.venv(interpreter)
        homes = [venv[1]] if venv and venv[1] else []
        for folder in {posixpath.dirname(interpreter), *homes}:
            real_folder, _, found = self.resolve(folder)
            self.pth_override(real_folder if found else None)
        self.pth_override(real_interp.parent)
        start = venv[1] if venv and venv[1] is not None else posixpath.dirname(self.dest(real_interp))
        prefix, versions = self.prefix(start, interpreter, version)
        self.tree(real.parent, f"the folder of {executable}, first on sys.path")
        for v in versions:
            self.path(f"{prefix}/lib/python3{v}.zip", "on sys.path", missing_ok=True)
            for lib in ("lib", "lib64"):
                self.tree_or_file(f"{prefix}/{lib}/python3.{v}", "the standard library")
        prefixes = []
        if venv:
            self.tree_or_file(venv[0], "")
            prefixes.append(venv[0])
        if not venv or venv[2]:
            prefixes += [prefix, f"{self.root_home()}/.local"]
        for site_prefix in prefixes:
            for v in versions:
                for folder in (
                    f"{site_prefix}/lib/python3.{v}/site-packages",
                    f"{site_prefix}/lib/python3.{v}/dist-packages",
                    f"{site_prefix}/lib64/python3.{v}/site-packages",
                    f"{site_prefix}/local/lib/python3.{v}/dist-packages",
                    f"{site_prefix}/lib/python3/dist-packages",
                ):
                    self.site(posixpath.normpath(folder))
        self.drain()

    def interpreter(self, executable: str, real: Path) -> tuple[str, Path, str | None]:
        """The interpreter the kernel runs for `executable`, checked to be a Python ELF; and its 3.N."""
        exe = self.shown(executable)
        head = self.head(real, executable)
        if head.startswith(ELF):
            self.stop(f"{exe}: an ELF binary, not kvmbridge's console script; cannot tell what it loads at boot")
        if not head.startswith(b"#!"):
            self.stop(f"{exe}: has no #! line; systemd's execve would fail at boot (Exec format error)")
        line, newline, _ = head[2:].partition(b"\n")
        if not newline:
            self.stop(f"{exe}: its #! line is longer than the kernel's 255 bytes")
        if b"\r" in line:
            self.stop(
                f"{exe}: its #! line ends in a carriage return (CRLF); the kernel would look for an "
                "interpreter whose name ends in \\r"
            )
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        words = text.strip(" \t").split(None, 1)
        if not text.isprintable() or not words or not SAFE_EXECUTABLE.fullmatch(words[0]):
            self.stop(f"{exe}: its #! line does not name an interpreter by a plain absolute path")
        interpreter = words[0]
        if posixpath.basename(interpreter) == "env":
            self.stop(
                f"{exe}: its #! line runs {interpreter}, so PATH at boot picks the interpreter; "
                "name the interpreter by absolute path (as pip writes it)"
            )
        if len(words) > 1 and not HARMLESS_OPTIONS.fullmatch(words[1].strip(" \t")):
            self.stop(f"{exe}: cannot tell what '#!{interpreter} {words[1].strip()}' loads")
        real_interp = self.path(interpreter, f"the interpreter of {executable}")
        assert real_interp is not None
        what = f"{self.shown(interpreter)} (the interpreter of {executable})"
        st = real_interp.lstat()
        if stat.S_ISDIR(st.st_mode):
            self.stop(f"{what}: is a folder, not an executable file")
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
            self.stop(f"{what}: is not an executable file")
        if not self.head(real_interp, what).startswith(ELF):
            self.stop(f"{what}: is not an ELF binary (a script?); cannot tell what it loads at boot")
        for path, label in ((real, executable), (real_interp, what)):
            if "noexec" in mount_of(path)[1]:
                self.stop(f"{label}: lies on a file system mounted noexec; systemd's execve would fail at boot")
        name = PYTHON.fullmatch(real_interp.name)
        if not name:
            self.stop(f"{what}: {real_interp.name} is not a python3 interpreter; cannot tell what it loads at boot")
        return interpreter, real_interp, name.group(1)

    def pth_override(self, folder: Path | None) -> None:
        """A ._pth file beside the interpreter or its home replaces sys.path in getpath: refused, not modelled."""
        names = self.root.listdir(self.dest(folder)) if folder is not None and folder.is_dir() else []
        if any(name.endswith("._pth") for name, _ in names):
            self.stop(f"{folder}: holds a ._pth file, which replaces sys.path; cannot tell what Python loads")

    def venv(self, interpreter: str) -> tuple[str, str | None, bool] | None:
        """(sys.prefix, home, includes system site) when site.py finds a pyvenv.cfg for this name:
        beside it or one folder up, and sys.prefix is then the folder above the interpreter's."""
        folder = posixpath.dirname(posixpath.normpath(interpreter))
        for candidate in (folder, posixpath.dirname(folder)):
            cfg = posixpath.join(candidate, "pyvenv.cfg")
            real = self.path(cfg, "the virtualenv's settings", missing_ok=True)
            if real is None:
                continue
            if not real.is_file():
                self.stop(f"{self.shown(cfg)}: not a regular file (a folder, FIFO or device); Python opens it at boot")
            text = self.read(real, cfg)
            if any(len(row.splitlines()) > 1 for row in LINE_END.split(text)):
                self.stop(
                    f"{self.shown(cfg)}: holds line separators Python's readers disagree on; cannot tell what loads"
                )
            home, system = None, "true"
            for row in LINE_END.split(text):
                key, eq, value = row.partition("=")
                if not eq:
                    continue
                key, value = key.strip().lower(), value.strip()
                if key == "home":
                    if home is not None:
                        self.stop(
                            f"{self.shown(cfg)}: more than one home (getpath takes the first, site.py the last); "
                            "cannot tell what loads"
                        )
                    home = value
                elif key == "include-system-site-packages":
                    system = value.lower()
            if home is not None and not home.startswith("/"):
                self.stop(f"{self.shown(cfg)}: home = {home!r} is not an absolute path; cannot tell what loads")
            return posixpath.dirname(folder), home, system == "true"
        return None

    def prefix(self, start: str, interpreter: str, version: str | None) -> tuple[str, list[str]]:
        """The base prefix as getpath finds it: the nearest folder above `start` with lib/python3.N/os.py."""
        current = posixpath.normpath(start)
        for name in ("pybuilddir.txt", "Modules/Setup.local"):  # getpath's build-tree landmarks
            if self.path(f"{current}/{name}", "where Python looks for a build tree", missing_ok=True):
                self.stop(
                    f"{self.shown(current)}/{name}: Python would run from a build tree; cannot tell what it loads"
                )
        why = "where Python looks for its standard library"
        while True:
            self.path(f"{current}/lib", why, missing_ok=True)
            lib, _, found = self.resolve(posixpath.join(current, "lib"))
            versions = []
            names = self.root.listdir(self.dest(lib)) if found and lib.is_dir() else []
            for name, _ in names:
                m = PYTHON.fullmatch(name)
                if not m or not m.group(1) or version not in (None, m.group(1)):
                    continue
                # getpath's landmarks (3.11): os.py or os.pyc makes the prefix, lib-dynload the exec prefix;
                # whoever can create one of them in a folder passed first decides what Python loads.
                landmarks = [self.path(f"{current}/lib/{name}/{mark}", why, missing_ok=True) for mark in LANDMARKS]
                if landmarks[2] is not None:
                    self.tree_or_file(f"{current}/lib/{name}/lib-dynload", "the standard library's extensions")
                if landmarks[0] is not None or landmarks[1] is not None:
                    versions.append(m.group(1))
            if versions:
                return current, sorted(versions)
            if current == "/":
                self.stop(
                    f"{self.shown(start)}: no standard library (lib/python3.N/os.py) above it; "
                    f"cannot tell what {interpreter} loads at boot"
                )
            current = posixpath.dirname(current)

    def root_home(self) -> str:
        """Root's home as Python's user site finds it (HOME at boot is root's passwd entry)."""
        try:
            passwd = self.root.read("/etc/passwd", limit=1 << 20).data or b""
        except KvmbridgeError:
            passwd = b""
        for row in passwd.decode("utf-8", "replace").splitlines():
            fields = row.split(":")
            if len(fields) >= 6 and fields[0] == "root" and fields[5].startswith("/"):
                return posixpath.normpath(fields[5])
        return "/root"

    def site(self, folder: str) -> None:
        """A site folder: its content and what its .pth files add (Python reads them in name order)."""
        real = self.path(folder, "a site folder on sys.path", missing_ok=True)
        if real is None or not real.is_dir():
            return
        self.tree(real, "on sys.path")
        for name, _ in self.root.listdir(self.dest(real)):
            if name.endswith(".pth"):
                self.pth(folder, name)

    def pth(self, folder: str, name: str) -> None:
        dest = f"{folder}/{name}"
        real = self.path(dest, "a .pth file Python reads at boot", missing_ok=True)
        if real is None or real.is_dir():  # Python fails to open it and skips it
            return
        if not real.is_file():
            self.stop(f"{self.shown(dest)}: not a regular file (a FIFO or device); Python would open it at boot")
        for row in LINE_END.split(self.read(real, dest)):
            if row.startswith("#") or not row.strip():
                continue
            if row.startswith(("import ", "import\t")):
                finder = EDITABLE_LINE.fullmatch(row)
                if finder:
                    self.editable(folder, finder.group(1), dest)
                elif not DISTUTILS_LINE.fullmatch(row):
                    self.stop(
                        f"{self.shown(dest)}: runs code at boot ({one_line(row[:80])}) that this check cannot "
                        "follow (only setuptools' editable finder and distutils shim are known); cannot tell "
                        "what Python loads"
                    )
                continue
            added = posixpath.normpath(posixpath.join(folder, row.rstrip()))
            if "\0" in added:
                continue
            self.tree_or_file(added, f"added to sys.path by {self.shown(dest)}")

    def editable(self, folder: str, module: str, pth: str) -> None:
        """setuptools' editable finder: the source folders it maps are what `import kvmbridge` loads."""
        dest = f"{folder}/{module}.py"
        real = self.path(dest, f"imported by {self.shown(pth)}", missing_ok=True)
        if real is None or not real.is_file():
            self.stop(
                f"{self.shown(dest)}: missing or not a regular file (imported by {self.shown(pth)}); "
                "cannot tell which folders this editable install loads"
            )
        paths: list[str] = []
        try:
            for node in ast.parse(self.read(real, dest)).body:
                targets = (
                    node.targets
                    if isinstance(node, ast.Assign)
                    else [node.target]
                    if isinstance(node, ast.AnnAssign)
                    else []
                )
                value_node = getattr(node, "value", None)
                if value_node is not None and any(
                    isinstance(t, ast.Name) and t.id in ("MAPPING", "NAMESPACES") for t in targets
                ):
                    value = ast.literal_eval(value_node)
                    for item in value.values():
                        paths += [item] if isinstance(item, str) else list(item)
        except (SyntaxError, ValueError, TypeError, AttributeError, RecursionError, MemoryError):
            self.stop(f"{self.shown(dest)}: cannot tell which folders this editable install loads")
        for path in paths:
            if not isinstance(path, str) or not path.startswith("/"):
                self.stop(f"{self.shown(dest)}: cannot tell which folders this editable install loads")
            self.tree_or_file(posixpath.normpath(path), f"loaded through {self.shown(dest)}")
