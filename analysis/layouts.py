"""How each lab's results are laid out for a reader: the table of its report section and the text of its cells.

A lab's table has one column per value of its column axis and one row per system and combination of its row axes;
a cell shows the lab's cell columns (the steps a reader looks at first). The Markdown report and the HTML page take
their layout from here (the picture is of outcomes alone); a lab without an entry gets its first parameter as the
column axis, the others as row axes and its outcome as the cell.
"""
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from labs import bind_matrix, module
from labs.vocabulary import OK, SPECIAL_OUTCOMES

MISMATCH_MARK = " ✗"
PAIR_ARROW = " → "
# Seed 004's cells: TCP over IPv4, both sockets on the wildcard address, the second socket from another process.
SEED_LAYOUT = {"lab": "bind_matrix", "proto": "tcp", "family": "inet", "first_addr": "wildcard",
               "second_addr": "wildcard", "prober": "other_process"}


@dataclass(frozen=True)
class Axis:
    """A row axis of a lab's table: one result column, or two (first, second) shown as a pair."""
    name: str
    label: str
    columns: tuple


@dataclass(frozen=True)
class Layout:
    """How a lab's table is laid out: its column axis (values in `column_order` first), its row axes after the
    system, the columns its cells show; `seed` holds result-column values the first view shows (HTML filters start
    on them); `description` is the section's text for a reader who has not read the lab's code."""
    column: str
    column_order: tuple
    rows: tuple
    cell: tuple = ("outcome",)
    seed: dict = field(default_factory=dict)
    description: str = ""


def _text(frame, column):
    return frame[column].fillna("").astype(object) if column in frame.columns else pd.Series(
        "", index=frame.index, dtype=object)


def bind_listen_texts(frame):
    """bind_matrix's cell: the bind outcome, and listen's when only listen failed."""
    outcome, bind, listen = (_text(frame, column) for column in ("outcome", "bind", "listen"))
    return pd.Series(np.select(
        [outcome.isin(SPECIAL_OUTCOMES) & (outcome != OK), (bind == OK) & ~listen.isin(["", OK]), bind != ""],
        [outcome, "ok, listen " + listen, bind], default=outcome), index=frame.index, dtype=object)


def step_texts(frame, columns):
    """A cell of the given columns: the value alone for one column, "column value" pairs for several (empty ones
    left out); the outcome alone when the case has no result (unsupported, inconclusive, error)."""
    outcome = _text(frame, "outcome")
    if len(columns) == 1:
        text = _text(frame, columns[0])
    else:
        text = pd.Series("", index=frame.index, dtype=object)
        for column in columns:
            value = _text(frame, column)
            part = (column + " " + value).where(value != "", "")
            text = text.where((part == "") | (text == ""), text + ", ") + part
    no_result = outcome.isin(SPECIAL_OUTCOMES) & (outcome != OK)
    return text.where(~no_result & (text != ""), outcome)


LAYOUTS = {
    "bind_matrix": Layout(
        column="state", column_order=bind_matrix.TCP_STATES,
        rows=(Axis("options", "options (first → second)", ("first_opts", "second_opts")),
              Axis("proto", "protocol", ("proto",)),
              Axis("family", "family", ("family",)),
              Axis("addresses", "addresses (first → second)", ("first_addr", "second_addr")),
              Axis("prober", "prober", ("prober",))),
        cell=("bind", "listen"),
        seed={column: value for column, value in SEED_LAYOUT.items() if column != "lab"},
        description="Outcome of the second socket's bind() (and of its listen() when only that failed) on the port "
                    "the first socket holds, in each state of the first socket. The first view is seed 004's: TCP "
                    "over IPv4, both sockets on the wildcard address, the second from another process. An option "
                    "or address pair shown as one value means both sockets."),
    "unix_sockets": Layout(
        column="namespace", column_order=("path", "abstract", "none"),
        rows=(Axis("scenario", "scenario", ("scenario",)), Axis("clients", "clients", ("clients",))),
        cell=("bind", "connect", "accept", "poll_accept", "peer_name", "server_name", "own_name", "answers",
              "cross_wired"),
        description="AF_UNIX sockets (seed 002), named by a path in the file system or by an abstract name "
                    "(Linux); none: an AF_INET address. bind_live / bind_stale / bind_regular_file: bind() to a "
                    "name held by a listening socket, by the socket file of a process that exited, by a regular "
                    "file. connect_stale / connect_regular_file: connect() to those. names_named / names_unnamed: "
                    "what getpeername() (peer_name) and getsockname() of the server (server_name) and of the client "
                    "(own_name) return when the client bound a name or did not: path, abstract, unnamed. "
                    "accept_nonblocking: accept() on a non-blocking listener with nothing pending (EAGAIN), then "
                    "with a connection pending (poll_accept). unix_to_inet / inet_to_unix: connect() across "
                    "families. race: `clients` clients connect at once and each sends its id; answers own means "
                    "every client got its own id back, cross_wired counts those that got another's. Each cell "
                    "shows the steps the scenario ran."),
    "runtime_defaults": Layout(
        column="family", column_order=("inet", "inet6", "dual"),
        rows=(Axis("helper", "helper", ("helper",)),),
        cell=("reuseaddr", "reuseport", "exclusiveaddruse", "v6only", "second_copy", "restart"),
        description="What the host Python's own server helpers (socket.create_server, socketserver.TCPServer, "
                    "http.server.HTTPServer, asyncio start_server and create_datagram_endpoint, called with no reuse "
                    "argument) set on their socket, read back with getsockopt(): SO_REUSEADDR (reuseaddr), "
                    "SO_REUSEPORT, SO_EXCLUSIVEADDRUSE (absent where the OS has no such option), IPV6_V6ONLY. Then "
                    "what that means: second_copy is a second server made the same way on the same port while the "
                    "first listens (ok: the port is shared by accident); restart is a new server on the port at "
                    "once, while the old server's connection is in TIME_WAIT (seed 004's restart; TCP only). "
                    "Family dual is create_server(dualstack_ipv6=True)."),
    "time_wait_owner": Layout(
        column="close", column_order=("orderly", "shutdown", "abortive", "simultaneous"),
        rows=(Axis("closer", "closer", ("closer",)), Axis("family", "family", ("family",))),
        cell=("time_wait", "bind", "listen"),
        description="Which end of a loopback TCP connection holds TIME_WAIT after each way of closing (seed 003), "
                    "as the OS table shows it once nothing is still closing, and whether a new socket without "
                    "options can bind() (and listen()) the server's port at once. The listener is closed first, so "
                    "only the connection holds the port. orderly: the closer close()s, then the other end; "
                    "shutdown: the closer shutdown(SHUT_WR)s, the other end reads EOF and closes, then the closer "
                    "closes; abortive: the closer closes with SO_LINGER 0 (an RST); simultaneous: both ends' FINs "
                    "are sent before either arrives (witnessed: both ends in FIN_WAIT_1)."),
    "tuple_reuse": Layout(
        column="target", column_order=("same_remote", "other_remote"),
        rows=(Axis("opts", "options (both sockets)", ("opts",)), Axis("family", "family", ("family",)),
              Axis("tcp_tw_reuse", "tcp_tw_reuse", ("tcp_tw_reuse",)),
              Axis("timestamps", "timestamps used", ("timestamps",))),
        cell=("setsockopt", "bind", "connect"),
        description="A client bound to port A connects to a listener on B and closes first, so A is in TIME_WAIT "
                    "(witnessed). A new socket with the same options binds A at once and connects to B again "
                    "(same_remote: the 4-tuple the TIME_WAIT entry holds) or to another listener C (other_remote) "
                    "(seeds 000 and 003). Beside them the facts that decide it on Linux: the tcp_tw_reuse sysctl and "
                    "whether the first connection used TCP timestamps."),
    "hijack": Layout(
        column="prober", column_order=("other_process", "other_user"),
        rows=(Axis("options", "options (first → second)", ("first_opts", "second_opts")),
              Axis("family", "family", ("family",)),
              Axis("addresses", "addresses (first → second)", ("first_addr", "second_addr"))),
        cell=("bind", "listen", "accepted_by", "split", "after_close"),
        seed={"family": "inet", "prober": "other_process"},
        description="Can another program take over a listener's connections (seeds 001, 003)? A first socket "
                    "listens; a second one, in another process of the same user (other_process) or of another user "
                    "(other_user), binds the same port with its own options and address, and listens. Where both "
                    "listen, 16 clients connect: accepted_by says who accepted them (first, second, both; split: "
                    "how many each, first/second), or refused. after_close: who accepts a new connection once the "
                    "first listener has closed. A cell that shows only bind or listen: the second socket was "
                    "refused there."),
    "socketpair_churn": Layout(
        column="opts", column_order=("none", "SO_REUSEADDR"),
        rows=(Axis("strategy", "strategy", ("strategy",)), Axis("pairs", "pairs", ("pairs",))),
        cell=("outcome", "made", "failures", "retries", "miswired", "time_wait_left", "pairs_per_second"),
        description="`pairs` TCP socket pairs on 127.0.0.1 made and closed back to back (seed 000), as a "
                    "socketpair() emulation makes them: a listener, a client that connects, the accepted end; the "
                    "client end closes first, so each pair leaves a TIME_WAIT on the client's port. Strategies for "
                    "the ports: sequential (walking a window of 2,048 ports and wrapping round, no retry), "
                    "os_assigned (port 0), random (the whole range 1024-65535, retried on failure: seed 000's fix); "
                    "python_socketpair is the host Python's own socket.socketpair(). opts: SO_REUSEADDR on every "
                    "socket or none. made: pairs whose two ends were connected to each other (miswired: connected "
                    "to a stray connection); failures: every failed call by step and error, retried ones included; "
                    "time_wait_left: TIME_WAIT entries left on the ports used; pairs_per_second: the speed."),
}
CELL_TEXTS = {"bind_matrix": bind_listen_texts}


def pair_label(first, second):
    """'a' when both are a, else 'a → b' (an option or address pair of a first and a second socket)."""
    first, second = first.fillna("").astype(object), second.fillna("").astype(object)
    return first.where(first == second, first + PAIR_ARROW + second)


def axis_labels(frame, axis):
    """Each row's value of a row axis: the column's value, or the pair's label."""
    if len(axis.columns) == 2:
        return pair_label(frame[axis.columns[0]], frame[axis.columns[1]])
    return frame[axis.columns[0]].fillna("").astype(object)


def lab_layout(lab):
    """The lab's entry of LAYOUTS; else its first parameter as columns and all the others as row axes."""
    if lab in LAYOUTS:
        return LAYOUTS[lab]
    parameters = module(lab).PARAMETERS
    return Layout(column=parameters[0], column_order=(),
                  rows=tuple(Axis(name, name, (name,)) for name in parameters[1:]))


def cell_texts(frame):
    """Each case's cell text as its lab's layout shows it, with MISMATCH_MARK where the verdict is mismatch."""
    labs = _text(frame, "lab")
    texts = pd.Series("", index=frame.index, dtype=object)
    for lab in pd.unique(labs):
        rows = labs == lab
        part = frame if rows.all() else frame[rows]  # one lab (the usual case): no copy of a big table
        texts[rows] = (CELL_TEXTS[lab](part) if lab in CELL_TEXTS else
                       step_texts(part, lab_layout(lab).cell) if lab else _text(part, "outcome"))
    if "verdict" in frame.columns:
        texts = texts.where(frame["verdict"] != "mismatch", texts + MISMATCH_MARK)
    return texts
