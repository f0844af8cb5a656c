"""Names shared by every lab and by the controller: outcomes, states, socket options.

These are the contract of ../shared/DESIGN.md. The controller validates expectation files against them, so a
value that is not here cannot be expected, and a lab cannot emit one.
"""

# Outcomes that are not an errno name. An errno name (EADDRINUSE, EACCES, ...) is an outcome too.
OK = "ok"
UNSUPPORTED = "unsupported"      # the case cannot exist on this host (option unknown, first socket refused)
INCONCLUSIVE = "inconclusive"    # the earlier socket's state was not witnessed: no result
ERROR = "error"                  # the agent itself failed; message in `detail`
SPECIAL_OUTCOMES = (OK, UNSUPPORTED, INCONCLUSIVE, ERROR)

# Error names an outcome may carry: errno names, with Windows WSA codes mapped onto them (labs/sockopts.py).
ERROR_NAMES = (
    "EADDRINUSE", "EADDRNOTAVAIL", "EACCES", "EPERM", "EINVAL", "EOPNOTSUPP", "ENOPROTOOPT", "EAFNOSUPPORT",
    "EPROTONOSUPPORT", "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "ETIMEDOUT", "EISCONN", "ENOTCONN",
    "EAGAIN", "EWOULDBLOCK", "EINPROGRESS", "EALREADY", "ENOENT", "ENOTSOCK", "ENOBUFS", "EMFILE", "ENFILE",
    "EHOSTUNREACH", "ENETUNREACH", "EPIPE", "EBADF", "EFAULT", "ENOTDIR", "EISDIR", "EEXIST", "ENOTEMPTY",
    "EROFS", "ENAMETOOLONG", "ELOOP", "EPROTOTYPE", "EDESTADDRREQ", "EMSGSIZE",
)

# TCP states as the witness names them, in lifecycle order; a witness joins the states it saw in this order
# with "+", so "LISTEN+ESTABLISHED" is both the name of a bind_matrix state and what its witness shows.
# BOUND: a socket bound but not listening (TCP), or an unconnected UDP socket; a connected UDP socket is
# ESTABLISHED.
# FULL_FIN_WAIT_2: a closed socket's FIN_WAIT_2 that Linux keeps as a full socket, not as the timewait entry it
# usually becomes (labs.witness, SockDiagReader): bind() treats the two apart.
FULL_FIN_WAIT_2 = "FIN_WAIT_2 (full socket)"
TCP_STATES = (
    "BOUND", "LISTEN", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", FULL_FIN_WAIT_2,
    "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT", "CLOSED",
)

# Socket options of the matrix, in the order DESIGN.md joins them ("SO_REUSEADDR+SO_REUSEPORT").
OPTIONS = ("SO_REUSEADDR", "SO_REUSEPORT", "SO_REUSEPORT_LB", "SO_EXCLUSIVEADDRUSE")
NO_OPTIONS = "none"


def join_options(names):
    """The canonical spelling of a set of options: DESIGN.md's order, "+"-joined, or "none"."""
    chosen = [name for name in OPTIONS if name in names]
    return "+".join(chosen) if chosen else NO_OPTIONS


def is_option_set(spelling):
    """Whether `spelling` is a set of options as join_options spells it: none, or options once each, in order."""
    if spelling == NO_OPTIONS:
        return True
    parts = spelling.split("+")
    return all(part in OPTIONS for part in parts) and len(set(parts)) == len(parts) and join_options(parts) == spelling


def split_options(spelling):
    """The inverse of join_options."""
    return () if spelling == NO_OPTIONS else tuple(spelling.split("+"))


def join_states(states):
    """The witness spelling of a set of states: lifecycle order, "+"-joined, "" when nothing was seen."""
    seen = set(states)
    return "+".join(state for state in TCP_STATES if state in seen)


# The fixed columns of every results table (DESIGN.md); each lab adds its PARAMETERS and STEPS after them.
# `errno` is the raw number behind an error-name outcome; `os_version` is the kernel/build string of host facts,
# `upstream_release` the upstream kernel version where a distribution hides it (labs.hostfacts.upstream_release),
# `python` the host Python's version (what runtime_defaults measures depends on it).
RESULT_COLUMNS = (
    "run_id", "host", "os_family", "os_release", "upstream_release", "os_version", "python", "lab", "case_id",
    "outcome", "errno", "witness", "detail",
)
