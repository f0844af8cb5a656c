"""The agent: what runs ON a lab host. Standard library only, Python >= 3.8, any OS.

Run it by hand with `python3 -m labs` from the folder that holds labs/: it prints the host's facts, then one
JSON line per case. One module per lab; LABS names them in the order they run. A lab module has

    PARAMETERS      its parameter columns (the case's key: case_id() joins their values with "/")
    ID_DEFAULT      optional (parameter, value): the last of PARAMETERS, added after the lab's first cases, and the
                    value every case of before has; a case with that value leaves it out of its id, so ids made
                    before it was added stay the ids of the same cases (bind_matrix's second_family "", hijack's
                    proto "tcp"); an older agent's case record without it has that value (formats.hostlog)
    AXES            {parameter: every value it may take} (the controller validates expectation files against it)
    STEPS           its step columns: the outcome of each step (ok, an errno name, or one of STEP_VALUES)
    STEP_VALUES     {step: the values other than ok and errno names that the step may give}, e.g. who accepted
    MEASURES        columns it records that are figures or facts, not outcomes (pairs_per_second, timestamps, ...);
                    expectation rules may depend on them (`when:`), never expect them
    TUNABLE         {parameter: default} of parameters a user may set with --where (socketpair_churn's pairs=200):
                    the cases whose value is the default run with the given value instead
    cases(host)     its table of cases (dicts of PARAMETERS)
    Context(host)   what its cases share; close() ends it
    run_case(context, params)   runs one case; returns outcome, witness, detail, errno and its STEPS / MEASURES
                                (a case ended early, unsupported, inconclusive or error: labs/outcomes.py)

and may have (bind_matrix has; the agent then runs its cases in batches, spread over worker processes)

    run_batch(context, batch)   runs a list of cases together; returns their results, in order, as run_case would
    batch_size(host, workers)   how many cases a batch may hold on this host with that many workers at once

A run of every lab on one host takes well under a minute; socketpair_churn's default size is the slowest part.
"""

import importlib

LABS = ("bind_matrix", "hijack", "listener_drain", "time_wait_owner", "tuple_reuse", "unix_sockets",
        "runtime_defaults", "socketpair_churn")


def module(name):
    """The module of the lab `name` (one of LABS)."""
    return importlib.import_module("labs." + name)


def case_id(lab, params):
    """The stable key of a case of `lab` (its module): its parameter values in PARAMETERS order, the last left out
    when it has the lab's ID_DEFAULT value."""
    names = lab.PARAMETERS
    default = getattr(lab, "ID_DEFAULT", None)
    if default and params.get(default[0], default[1]) == default[1]:
        names = names[:-1]
    return "/".join(params[name] for name in names)


def parameters(lab, key):
    """The parameter values of a case of `lab` (its module) from its case id (case_id's inverse); ValueError when
    `key` is no case id of the lab (the wrong number of parts)."""
    parts = key.split("/")
    default = getattr(lab, "ID_DEFAULT", None)
    if default and len(parts) == len(lab.PARAMETERS) - 1:
        parts.append(default[1])
    if len(parts) != len(lab.PARAMETERS):
        raise ValueError("not a case id of {}: {}".format(lab.__name__, "/".join(lab.PARAMETERS)))
    return dict(zip(lab.PARAMETERS, parts))
