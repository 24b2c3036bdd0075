"""jointspace: one vector space for ids, text and audio, served over gRPC.

TensorFlow Recommenders only works with the legacy Keras 2 API (`tf-keras`), which TensorFlow
picks only if `TF_USE_LEGACY_KERAS` is set before its first import. Every entry point imports
this package first, so setting it here covers the CLI, the server, tests and workers. Nothing
heavy is imported here: the client and `jointspace query` never load TensorFlow.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
