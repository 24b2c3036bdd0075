"""Live serving state: the engine (model + generation + online changes), long-running
operations and the rebuild that swaps a new generation in."""
