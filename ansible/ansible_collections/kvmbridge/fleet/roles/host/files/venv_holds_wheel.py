#!/usr/bin/python3
# Copyright (c) kvmbridge developers
# MIT License (see https://opensource.org/licenses/MIT)
"""Exit 0 when the Python running this has WHEEL installed byte for byte, else print why and exit 1.

Run by the role with the venv's own interpreter on the managed host: the decision to skip pip rests
on what is installed (every file the wheel's RECORD lists, hashed where it was put), never on a note
that a run killed between copy and pip, an admin's `pip install`, or a restored /opt made untrue.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import sys
import zipfile
from importlib import metadata
from pathlib import Path


def why_not(wheel: Path) -> str | None:
    name = wheel.name.split("-")[0]
    with zipfile.ZipFile(wheel) as archive:
        records = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/RECORD")]
        if len(records) != 1:
            return f"{wheel}: no single .dist-info/RECORD"
        rows = list(csv.reader(io.StringIO(archive.read(records[0]).decode("utf-8"))))
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return f"{name}: not installed"
    checked = 0
    for row in rows:
        if len(row) < 2 or not row[1] or row[0].split("/", 1)[0].endswith(".data"):
            continue  # RECORD itself, and .data files pip moves elsewhere
        algorithm, _, expected = row[1].partition("=")
        try:
            data = Path(str(dist.locate_file(row[0]))).read_bytes()
        except OSError:
            return f"{row[0]}: missing from the installed {name}"
        got = base64.urlsafe_b64encode(hashlib.new(algorithm, data).digest()).rstrip(b"=").decode()
        if got != expected:
            return f"{row[0]}: the installed file differs from {wheel.name}"
        checked += 1
    return None if checked else f"{wheel}: its RECORD lists no files"


if __name__ == "__main__":
    reason = why_not(Path(sys.argv[1]))
    print(reason or "installed")
    sys.exit(1 if reason else 0)
