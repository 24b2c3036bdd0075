"""Rewrite the settings table of docs/guide.md from the settings' single definition
(server/api/settings.py); `--check` only says whether the guide's copy is current.

    .venv/bin/python tools/settings_table.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jointspace.server.api.settings_doc import replaced_in

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the guide's table is out of date")
    args = parser.parse_args()
    text = GUIDE.read_text()
    current = replaced_in(text)
    if current == text:
        return 0
    if args.check:
        print(f"{GUIDE}: the settings table is out of date; run tools/settings_table.py", file=sys.stderr)
        return 1
    GUIDE.write_text(current)
    print(f"{GUIDE}: settings table rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
