"""Generate the Python stubs of protos/jointspace/v1/jointspace.proto into a folder.

    .venv/bin/python tools/stubs.py clients/python      (what `make stubs` runs)

The proto imports `google/longrunning/operations.proto`, which googleapis-common-protos ships
under another file name (`operations_proto.proto`) while registering it at run time under this
one. protoc needs the file under the name the import uses, so it is copied into a temporary
include folder first; the generated code imports `google.longrunning.operations_pb2`, which the
package provides. The other Google protos are read from the installed package as they are.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import google.api
import google.longrunning
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "protos" / "jointspace" / "v1" / "jointspace.proto"


def generate(out: Path) -> None:
    """jointspace/v1/jointspace_pb2{.py,.pyi,_grpc.py} under `out`; raises if protoc fails."""
    googleapis = Path(next(iter(google.api.__path__))).parent.parent  # the folder holding google/api
    with tempfile.TemporaryDirectory(prefix="jointspace-protos-") as tmp:
        renamed = Path(tmp) / "google" / "longrunning" / "operations.proto"
        renamed.parent.mkdir(parents=True)
        shutil.copyfile(Path(next(iter(google.longrunning.__path__))) / "operations_proto.proto", renamed)
        well_known = Path(protoc.__file__).parent / "_proto"
        code = protoc.main(["protoc", f"-I{ROOT / 'protos'}", f"-I{tmp}", f"-I{googleapis}", f"-I{well_known}",
                            f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", str(PROTO)])
    if code != 0:
        raise RuntimeError(f"protoc failed with exit status {code}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]))
