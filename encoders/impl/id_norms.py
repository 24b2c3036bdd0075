"""The ways an id vector's length can be bounded, by name.

Apart from ids.py, which imports TensorFlow, so that the command line can offer them (`train
--id-norm`) without loading it; ids.py maps each name to its function.
"""

# "clip" keeps an id vector's length at most 1, so popular and well-trained ids can outscore
# rarely seen ones; "unit" normalises it, making scores cosines.
NORMS = ("clip", "unit")
DEFAULT_NORM = "clip"
