"""The client distribution alone: built from clients/python into a fresh venv (from PyPI, as a
user would install it), it talks to a real server started from the main venv, without the server
package or TensorFlow. Takes about a minute: most of it is pip."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_client_package_alone_calls_a_real_server(server, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    source = shutil.copytree(ROOT / "clients" / "python", tmp_path / "client-source")  # builds write beside it
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(source)],
                               capture_output=True, text=True, timeout=600, check=False)
    assert installed.returncode == 0, installed.stderr[-2000:]
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True,
                            check=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "jointspace-client" in names and not names & {"tensorflow", "faiss-cpu", "jointspace", "librosa"}
    ran = subprocess.run([str(python), str(ROOT / "tests" / "client_alone.py"), server], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path, check=False)
    assert ran.returncode == 0, ran.stderr[-2000:]
    seen = json.loads(ran.stdout)
    from jointspace.client import Client

    with Client(server, timeout=30) as here:
        expected = [h.key for h in here.search(text="seven", k=3)]
        generation = here.info().generation
    assert seen["keys"] == seen["async_keys"] == expected and seen["generation"] == generation
    assert seen["error"] == {"type": "InvalidArgument", "field": "k", "reason": "INVALID_INPUT"}
    assert not seen["tensorflow_loaded"] and not seen["has_server"]
