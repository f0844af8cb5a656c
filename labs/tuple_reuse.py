"""tuple_reuse: a local port left in TIME_WAIT by a connection to B, bound again and connected to B again (the same
4-tuple) or to another port C. From seed 003 ("SO_REUSEADDR permits you to use a port that is stuck in TIME_WAIT,
but you still can not use that port to establish a connection to the last place it connected to") and seed 000
(Winsock binds over TIME_WAIT without options; a connect that repeats a TIME_WAIT 4-tuple fails, EADDRINUSE).

Each case opens two listeners on loopback, B and C. The original client sets the case's option (seed 003's program,
run again, sets it every time), binds a fresh port A explicitly and connects to B; it closes first and the server end
follows, so A is in TIME_WAIT: the OS table must show exactly TIME_WAIT on A and LISTEN on B once nothing is still
closing, else the case is `inconclusive` (the witness column shows A's states). Where the table lists no closed
socket's TIME_WAIT but the peer's word is exact (gVisor: Witness.time_wait_by_peer), the server end sends its FIN
with shutdown(SHUT_WR), and its FIN ACKed (connection.Peer) is A's witness, "TIME_WAIT (peer)", with an empty A
and B LISTEN in the table. Then a new socket sets the same
option (step setsockopt), binds A (bind) and connects to B (target same_remote) or C (other_remote) (connect).
Connections that got established are closed with an abort (SO_LINGER 0) and leave nothing behind; A's TIME_WAIT is
left to expire on its own, and no case waits for it.

opts: none, or one option the host knows (SO_REUSEADDR, SO_REUSEPORT; SO_REUSEPORT_LB, SO_EXCLUSIVEADDRUSE where
they exist), one at a time; an option the host lacks is not in its table. A host that refuses the option, or the
original connection with it (FreeBSD's SO_REUSEPORT_LB refuses connect()), records `unsupported`.

MEASURES, the facts that decide connect() over a TIME_WAIT 4-tuple on Linux: tcp_tw_reuse, the host's
net.ipv4.tcp_tw_reuse ("" where the host has none); timestamps, whether the ORIGINAL connection used TCP timestamps
(TCP_INFO's tcpi_options & TCPI_OPT_TIMESTAMPS on Linux and FreeBSD: yes or no; unknown where the host cannot tell).
"""
import itertools
import socket

from labs import connection, endpoints
from labs.connection import Loopback, Peer, port_of, settle
from labs.outcomes import Unsupported, record_steps, recorded
from labs.sockopts import Options, error_name
from labs.vocabulary import INCONCLUSIVE, NO_OPTIONS, OK, OPTIONS, join_options, join_states, split_options
from labs.witness import BY_PEER, Witness, witnessed_by

PARAMETERS = ("family", "opts", "target")
FAMILIES = ("inet", "inet6")
TARGETS = ("same_remote", "other_remote")
AXES = {"family": FAMILIES, "opts": (NO_OPTIONS,) + OPTIONS, "target": TARGETS}
STEPS = ("setsockopt", "bind", "connect")
STEP_VALUES = {}
MEASURES = ("tcp_tw_reuse", "timestamps")
TUNABLE = {}


def cases(host):
    opts = (NO_OPTIONS,) + tuple(host["options"])
    for family, option, target in itertools.product(FAMILIES, opts, TARGETS):
        yield dict(zip(PARAMETERS, (family, option, target)))


class Context:
    def __init__(self, host):
        self.options = Options(host["os_family"])
        self.witness = Witness(host["os_family"])
        self.tcp_tw_reuse = host.get("sysctls", {}).get("net.ipv4.tcp_tw_reuse", "")

    def close(self):
        self.witness.close()


def leave_time_wait(context, loopback, option_names, remote):
    """The original client: the case's options, bound to a fresh port A, connected to `remote`, closed first.
    Returns (A, whether it used timestamps); Unsupported where the host will not build it."""
    original = loopback.socket(option_names)
    port = loopback.bind(original)
    try:
        server = loopback.connect(original, remote)
    except socket.timeout:
        raise
    except OSError as exc:
        raise Unsupported("original connect with {}: {}".format(join_options(option_names),
                                                                 error_name(exc)[0])) from None
    timestamps = context.options.used_timestamps(original)
    witness = context.witness
    if witness.sees_time_wait or not witness.time_wait_by_peer:
        loopback.close_first(original, server)
        return port, timestamps, None
    # A's TIME_WAIT is not listed here: the server end sends its FIN keeping its descriptor, and says when the
    # original client ACKed it (connection.Peer), then closes
    loopback.close_one(original)
    connection.expect_eof(server)
    peer = Peer(context.options, server)
    peer.send_fin()
    acked = peer.wait()
    loopback.close_one(server)
    return port, timestamps, acked


def reuse(loopback, option_names, port, listener):
    """The new socket's steps: {step: outcome}, with "errno" of the step that failed. A connection it makes is
    accepted, so that loopback.close() aborts both of its ends."""
    steps, step = {}, "setsockopt"
    try:
        sock = loopback.track(endpoints.new_socket(loopback.options, "tcp", loopback.family, option_names))
        steps[step] = OK
        step = "bind"
        sock.bind((loopback.host, port))
        steps[step] = OK
        step = "connect"
        sock.connect((loopback.host, port_of(listener)))
        steps[step] = OK
    except socket.timeout:
        raise  # not an outcome: the agent gave up waiting
    except OSError as exc:
        steps[step], steps["errno"] = error_name(exc)
        return steps
    loopback.track(listener.accept()[0])
    return steps


def run_case(context, params):
    """Run one case; returns outcome, witness, detail, errno, the steps it reached and its measures."""
    record = {"outcome": OK, "witness": "", "detail": "", "errno": None, "tcp_tw_reuse": context.tcp_tw_reuse,
              "timestamps": ""}
    loopback = Loopback(context.options, params["family"])
    option_names = split_options(params["opts"])
    try:
        with recorded(record):
            remote, other = loopback.listener(), loopback.listener()
            port, record["timestamps"], acked = leave_time_wait(context, loopback, option_names, remote)
            seen = settle(context.witness, (port, port_of(remote)))
            record["witness"] = join_states(seen[0])
            record["detail"] = "port A {}, B {} (shows {}), C {}".format(port, port_of(remote), join_states(seen[1]),
                                                                          port_of(other))
            by_peer = acked and seen == ((), ("LISTEN",))
            if by_peer:
                record["witness"] = witnessed_by("TIME_WAIT", BY_PEER)
            elif acked is False:
                record["detail"] += "; the server end's FIN was not ACKed"
            if not by_peer and seen != (("TIME_WAIT",), ("LISTEN",)):
                record["outcome"] = INCONCLUSIVE  # the witness and detail say what was seen instead
                return record
            target = remote if params["target"] == "same_remote" else other
            steps = reuse(loopback, option_names, port, target)
            record_steps(record, steps, STEPS)
    finally:
        loopback.close()
    return record
