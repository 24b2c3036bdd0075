"""A test-only entry point: `python tests/harness_serve.py [FAULTS] -- ARGS...` installs the faults
its own options name (jointspace/core/faults.py), then runs `jointspace ARGS...` in this process.

No production entry point can enable fault injection, and neither can the environment; tests
that need a faulty server *process* (one they kill at a named step, say) start this instead of
`jointspace serve`. `serve_program` gives the `program` tuple for ServeProcess.

A pause is file-based here, for a test in another process: the first thread to reach the point
writes the point's name into --pause-file, then waits until --resume-file appears (and removes
it) or, without --resume-file, until the process is killed.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import jointspace  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from jointspace.core import faults
from jointspace.server.index.write_sites import SITES

HARNESS = str(Path(__file__).resolve())


def serve_program(*fault_options: str) -> tuple[str, ...]:
    """ServeProcess's `program` for `jointspace serve` under these fault options."""
    return (HARNESS, *fault_options, "--", "serve")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness_serve.py")
    parser.add_argument("--fail-write", action="append", choices=SITES, default=[], metavar="SITE",
                        help="this write site fails with ENOSPC (repeatable)")
    parser.add_argument("--pause-at", metavar="POINT", help="pause the first thread that reaches POINT")
    parser.add_argument("--pause-file", type=Path, help="written with the point's name once paused")
    parser.add_argument("--resume-file", type=Path, help="go on once this file appears (it is removed)")
    parser.add_argument("--decode-faults", action="store_true",
                        help="the decoder markers crash, hang or eat memory in the decoder processes")
    return parser


def _report_and_resume(pause: faults.Pause, point: str, pause_file: Path, resume_file: Path | None) -> None:
    """Tell the test the point is reached; resume when the test says so (never, without a file)."""
    pause.reached.wait()
    pause_file.write_text(point)
    if resume_file is None:
        return
    while not resume_file.is_file():
        time.sleep(0.01)
    resume_file.unlink()
    pause.resume.set()


def _faults(options: argparse.Namespace) -> faults.Faults:
    pauses = {}
    if options.pause_at:
        if options.pause_file is None:
            raise SystemExit("harness_serve.py: --pause-at needs --pause-file")
        pause = faults.Pause()
        threading.Thread(target=_report_and_resume, daemon=True,
                         args=(pause, options.pause_at, options.pause_file, options.resume_file)).start()
        pauses[options.pause_at] = pause
    return faults.Faults(frozenset(options.fail_write), pauses, options.decode_faults)


def main(argv: list[str]) -> int:
    if "--" not in argv:
        raise SystemExit("usage: harness_serve.py [FAULT OPTIONS] -- JOINTSPACE ARGS...")
    split = argv.index("--")
    faults.install(_faults(_parser().parse_args(argv[:split])))
    from jointspace.cli import main as jointspace_main

    return jointspace_main(argv[split + 1 :])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
