"""`python -m jointspace.cli`: the command line without the installed script (the benchmarks and
tests start servers this way, with the interpreter they run under)."""

import sys

from jointspace.cli import main

sys.exit(main())
