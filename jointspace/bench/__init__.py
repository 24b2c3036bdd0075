"""Benchmarks behind `jointspace bench ...`: each runs the real parts and prints its figures
together with the command that produced them, for docs/benchmarks.md."""
