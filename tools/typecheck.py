"""Type-check the package `jointspace` with mypy.

pyproject.toml maps several source folders into one package (jointspace/ -> jointspace,
encoders/ -> jointspace.encoders, server/ -> jointspace.server, and the client distribution's
clients/python/jointspace/{client,v1} -> jointspace.client, jointspace.v1), which mypy cannot follow from
the source tree. This script builds that package as a temporary tree of symlinks, runs
`mypy -p jointspace` there with the repository's configuration, writes mypy's report with the
paths mapped back to the source folders, and exits with mypy's exit code.

    .venv/bin/python tools/typecheck.py [extra mypy arguments]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Package folder inside the temporary tree -> source folder in the repository.
SUBPACKAGES = {"encoders": ROOT / "encoders", "server": ROOT / "server",
               "client": ROOT / "clients/python/jointspace/client", "v1": ROOT / "clients/python/jointspace/v1"}
SKIP = {"__pycache__"}


def build_tree(tmp: Path) -> Path:
    """TMP/jointspace/* -> jointspace/*, TMP/jointspace/<name> -> each folder of SUBPACKAGES."""
    package = tmp / "jointspace"
    package.mkdir()
    for entry in sorted((ROOT / "jointspace").iterdir()):
        if entry.name in SKIP or entry.name in SUBPACKAGES:
            continue
        (package / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    for name, source in SUBPACKAGES.items():
        (package / name).symlink_to(source, target_is_directory=True)
    return package


def source_path(line: str) -> str:
    """jointspace/encoders/x.py:3: ... -> encoders/x.py:3: ... (likewise the other subpackages)."""
    for name, source in SUBPACKAGES.items():
        prefix = f"jointspace/{name}/"
        if line.startswith(prefix):
            return f"{source.relative_to(ROOT)}/{line[len(prefix):]}"
    return line


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="jointspace-typecheck-") as tmp_name:
        tmp = Path(tmp_name)
        build_tree(tmp)
        command = [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "-p",
            "jointspace",
            *argv,
        ]
        # Only the temporary tree may provide `jointspace`: not an installed copy, not the source root.
        env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
        result = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, check=False)
    for line in result.stdout.splitlines():
        print(source_path(line))
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
