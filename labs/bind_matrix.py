"""bind_matrix: bind() and listen() on a port that an earlier socket holds, in every state and option pair.

Seed 004's experiment generalised: an earlier ("first") socket is put into a state on a fresh port, the state is
witnessed in the OS connection table, then a second socket with its own options tries bind() (and listen() for
TCP) on the same port, from another process, the same process, or another user.
"""

PARAMETERS = ("proto", "family", "state", "first_opts", "second_opts", "first_addr", "second_addr", "prober")

TCP_STATES = ("BOUND", "LISTEN", "LISTEN+ESTABLISHED", "ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT_2", "TIME_WAIT")
# A UDP socket is either bound, or bound and connected: the witness shows the latter as ESTABLISHED.
UDP_STATES = ("BOUND", "ESTABLISHED")

ADDRESSES = {
    "inet": ("wildcard", "loopback"),
    "inet6": ("wildcard", "loopback"),
    "dual": ("wildcard", "loopback", "v4mapped"),
}

PROBERS = ("other_process", "same_process", "other_user")

# Every value each parameter column may take (the controller validates expectations against these).
AXES = {
    "proto": ("tcp", "udp"),
    "family": tuple(ADDRESSES),
    "state": TCP_STATES,
    "first_addr": ADDRESSES["dual"],
    "second_addr": ADDRESSES["dual"],
    "prober": PROBERS,
    # first_opts / second_opts: any vocabulary.join_options() spelling
}
# Step columns: the outcome of each step of the second socket (empty when the step was not reached).
STEPS = ("setsockopt", "bind", "listen")


def case_id(params):
    """The stable key of a case: its parameter values in PARAMETERS order."""
    return "/".join(params[name] for name in PARAMETERS)
