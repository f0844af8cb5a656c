"""The agent: what runs ON a lab host. Standard library only, Python >= 3.8, any OS.

Run it by hand with `python3 -m labs` from the folder that holds labs/: it prints the host's facts, then one
JSON line per case. One module per lab; LABS names them in the order they run. A lab module has PARAMETERS (its
parameter columns), STEPS (its step columns), cases(host) (its table of cases), Context(host) (what its cases
share; close() ends it) and run_case(context, params) (runs one case, returns its result fields).
"""

import importlib

LABS = ("bind_matrix",)


def module(name):
    """The module of the lab `name` (one of LABS)."""
    return importlib.import_module("labs." + name)
