"""How each lab's results are laid out for a reader: the table of its report section, the text of its cells and
what each cell means for the lab's question (the colour analysis.palette gives it).

A lab's table has one column per value of its column axis and one row per system and combination of its row axes;
a cell shows the lab's cell columns (the steps a reader looks at first). A lab whose cells hold many steps has them
as its columns instead (`steps_as_columns`: one row per case, one column per step), so its table does not scroll
sideways. The Markdown report, the HTML page and the picture take their layout from here; a lab without an entry
gets its first parameter as the column axis, the others as row axes and its outcome as the cell.

Meanings are data: a lab's `meanings` are tried in order on each case (the first whose columns all hold one of its
values wins); a case none holds means what its outcome says (ok, refused for EADDRINUSE, another error, ...). An
axis or a meaning naming a column a table does not have (a column a later agent adds) is left out there.
"""
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import palette
from analysis.grouping import group_codes
from formats.table import filled
from labs import bind_matrix, module
from labs.vocabulary import ERROR, ERROR_NAMES, INCONCLUSIVE, OK, SPECIAL_OUTCOMES, UNSUPPORTED

MISMATCH_MARK = " ✗"
PAIR_ARROW = " → "
# Seed 004's cells: TCP over IPv4, both sockets on the wildcard address, the second socket from another process.
SEED_LAYOUT = {"lab": "bind_matrix", "proto": "tcp", "family": "inet", "second_family": "", "first_addr": "wildcard",
               "second_addr": "wildcard", "prober": "other_process"}
LISTENING = ("LISTEN", "LISTEN+ESTABLISHED")  # bind_matrix states in which the first socket still listens


@dataclass(frozen=True)
class Axis:
    """An axis of a lab's table: one result column, or two (first, second) shown as a pair."""
    name: str
    label: str
    columns: tuple


@dataclass(frozen=True)
class Meaning:
    """A case means `meaning` (a name of analysis.palette) where each column of `when` holds one of its values."""
    meaning: str
    when: dict


@dataclass(frozen=True)
class Layout:
    """How a lab's table is laid out: its column axis (an Axis, or one column's name; values in `column_order`
    first), its row axes after the system, the columns its cells show; `seed` holds result-column values the first
    view shows (HTML filters start on them, Markdown opens those tables); `split` names the row axes whose values
    get a Markdown table each; `groups` the columns the picture groups the lab's cases by; `meanings` what a case
    means for the lab's question (see the module's docstring); `description` is the section's text for a reader
    who has not read the lab's code."""
    column: object
    column_order: tuple
    rows: tuple
    cell: tuple = ("outcome",)
    seed: dict = field(default_factory=dict)
    description: str = ""
    steps_as_columns: bool = False
    split: tuple = ()
    groups: tuple = ()
    meanings: tuple = ()

    def __post_init__(self):
        if isinstance(self.column, str):
            object.__setattr__(self, "column", Axis(self.column, self.column, (self.column,)))

    def step_layout(self):
        """The layout of this lab's cells one per step: the column axis joins the row axes, the steps are the
        columns, a cell is one step's value (see step_cells)."""
        return Layout(column=Axis("step", "step", ("step",)), column_order=self.cell, rows=self.rows + (self.column,),
                      cell=("value",), seed=self.seed, description=self.description, groups=self.groups)


def _text(frame, column):
    """A column as text, missing values as "". A table made from host logs (no current results.csv) holds measures
    as numbers, a count beside missing values as a float: it is spelled as results.csv spells it (6, not 6.0)."""
    if column not in frame.columns:
        return pd.Series("", index=frame.index, dtype=object)
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.map(lambda value: "" if pd.isna(value) else "{:g}".format(value)).astype(object)
    return filled(values).astype(object)


def _no_result(outcome):
    return outcome.isin(SPECIAL_OUTCOMES) & (outcome != OK)


def bind_listen_texts(frame):
    """bind_matrix's cell: the bind outcome, and listen's when only listen failed."""
    outcome, bind, listen = (_text(frame, column) for column in ("outcome", "bind", "listen"))
    return pd.Series(np.select(
        [_no_result(outcome), (bind == OK) & ~listen.isin(["", OK]), bind != ""],
        [outcome, "ok, listen " + listen, bind], default=outcome), index=frame.index, dtype=object)


def hijack_texts(frame):
    """hijack's cell, short enough for a column per address pair: the step that refused the second socket, else
    who accepted the connections (UDP: received the datagrams; 'both 6/10': of 16, 6 by the first socket, 10 by the
    second), UDP's datagrams to an address only the wildcard covers ('wildcard only first 16/0'), and, after 'then',
    who took one once the first had closed."""
    outcome, bind, listen, accepted, received, split, wildcard, wildcard_split, after = (
        _text(frame, column) for column in ("outcome", "bind", "listen", "accepted_by", "received_by", "split",
                                            "wildcard_only", "wildcard_only_split", "after_close"))
    taken = accepted.where(accepted != "", received)
    served = (taken + (" " + split).where(split != "", "") +
              (", wildcard only " + wildcard + (" " + wildcard_split).where(wildcard_split != "", "")).where(
                  wildcard != "", "") +
              (", then " + after).where(after != "", ""))
    return pd.Series(np.select(
        [_no_result(outcome), ~bind.isin(["", OK]), ~listen.isin(["", OK]), taken != ""],
        [outcome, "bind " + bind, "listen " + listen, served],
        default=step_texts(frame, LAYOUTS["hijack"].cell)), index=frame.index, dtype=object)


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
    return text.where(~_no_result(outcome) & (text != ""), outcome)


LAYOUTS = {
    "bind_matrix": Layout(
        column="state", column_order=bind_matrix.TCP_STATES,
        rows=(Axis("options", "options (first → second)", ("first_opts", "second_opts")),
              Axis("proto", "protocol", ("proto",)),
              Axis("family", "family", ("family", "second_family")),
              Axis("addresses", "addresses (first → second)", ("first_addr", "second_addr")),
              Axis("prober", "prober", ("prober",))),
        cell=("bind", "listen"),
        seed={column: value for column, value in SEED_LAYOUT.items() if column != "lab"},
        groups=("proto", "family", "state"),
        meanings=(
            # ::1 and ::ffff:127.0.0.1 are two addresses, and a V6ONLY socket (inet6, or one bound to ::1) meets no
            # IPv4 one: both bound is no sharing
            Meaning("ok", {"outcome": (OK,), "first_addr": ("loopback",), "second_addr": ("v4mapped",)}),
            Meaning("ok", {"outcome": (OK,), "first_addr": ("v4mapped",), "second_addr": ("loopback",)}),
            Meaning("ok", {"outcome": (OK,), "family": ("inet",), "second_family": ("inet6",)}),
            Meaning("ok", {"outcome": (OK,), "family": ("inet6",), "second_family": ("inet",)}),
            Meaning("ok", {"outcome": (OK,), "family": ("inet",), "second_family": ("dual",),
                           "second_addr": ("loopback",)}),
            Meaning("ok", {"outcome": (OK,), "family": ("dual",), "first_addr": ("loopback",),
                           "second_family": ("inet",)}),
            Meaning("ok", {"outcome": (OK,), "family": ("inet6",), "second_family": ("dual",),
                           "second_addr": ("v4mapped",)}),
            Meaning("shared", {"outcome": (OK,), "proto": ("tcp",), "state": LISTENING}),
            Meaning("shared", {"outcome": (OK,), "proto": ("udp",), "state": ("BOUND",)}),
        ),
        description="Outcome of the second socket's bind() (and of its listen() when only that failed) on the port "
                    "the first socket holds, in each state of the first socket. The first view is seed 004's: TCP "
                    "over IPv4, both sockets on the wildcard address, the second from another process. An option "
                    "or address pair shown as one value means both sockets; a family pair ('inet → dual') is a "
                    "second socket of another family than the first: 0.0.0.0 beside [::] with IPV6_V6ONLY 0 (dual) "
                    "or 1 (inet6), 127.0.0.1 beside ::1 or ::ffff:127.0.0.1. A second socket bound beside a live "
                    "listener, or beside a bound UDP socket, on an address that overlaps its address, is marked "
                    "shared: it may take their connections or datagrams (the hijack lab measures who does); one "
                    "whose address cannot meet the first's (a V6ONLY socket beside an IPv4 one, ::1 beside "
                    "::ffff:127.0.0.1) is ok."),
    "unix_sockets": Layout(
        column="namespace", column_order=("path", "abstract", "none"),
        rows=(Axis("scenario", "scenario", ("scenario",)), Axis("clients", "clients", ("clients",))),
        cell=("bind", "connect", "accept", "poll_accept", "peer_name", "server_name", "own_name", "answers",
              "cross_wired"),
        steps_as_columns=True,
        meanings=(Meaning("takeover", {"answers": ("crossed",)}),),
        description="AF_UNIX sockets (seed 002), named by a path in the file system or by an abstract name "
                    "(Linux); none: an AF_INET address. bind_live / bind_stale / bind_regular_file: bind() to a "
                    "name held by a listening socket, by the socket file of a process that exited, by a regular "
                    "file. connect_stale / connect_regular_file: connect() to those. names_named / names_unnamed: "
                    "what getpeername() (peer_name) and getsockname() of the server (server_name) and of the client "
                    "(own_name) return when the client bound a name or did not: path, abstract, unnamed. "
                    "accept_nonblocking: accept() on a non-blocking listener with nothing pending (EAGAIN), then "
                    "with a connection pending (poll_accept). unix_to_inet / inet_to_unix: connect() across "
                    "families. race: `clients` clients connect at once and each sends its id; answers own means "
                    "every client got its own id back, cross_wired counts those that got another's. Each row "
                    "shows the steps the scenario ran."),
    "runtime_defaults": Layout(
        column="family", column_order=("inet", "inet6", "dual"),
        rows=(Axis("helper", "helper", ("helper",)),),
        cell=("reuseaddr", "reuseport", "exclusiveaddruse", "v6only", "second_copy", "restart"),
        steps_as_columns=True,
        meanings=(Meaning("takeover", {"second_copy": (OK,)}), Meaning("refused", {"restart": ("EADDRINUSE",)})),
        description="What the host Python's own server helpers (socket.create_server, socketserver.TCPServer, "
                    "http.server.HTTPServer, asyncio start_server and create_datagram_endpoint, called with no reuse "
                    "argument) set on their socket, read back with getsockopt(): SO_REUSEADDR (reuseaddr), "
                    "SO_REUSEPORT, SO_EXCLUSIVEADDRUSE (absent where the OS has no such option), IPV6_V6ONLY. Then "
                    "what that means: second_copy is a second server made the same way on the same port while the "
                    "first listens (ok: the port is shared by accident, a takeover); restart is a new server on the "
                    "port at once, while the old server's connection is in TIME_WAIT (seed 004's restart; TCP "
                    "only). Family dual is create_server(dualstack_ipv6=True)."),
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
        column=Axis("addresses", "addresses (first → second)", ("first_addr", "second_addr")),
        column_order=("wildcard", "wildcard → loopback", "loopback → wildcard", "loopback", "v4mapped",
                      "wildcard → v4mapped", "v4mapped → wildcard", "loopback → v4mapped", "v4mapped → loopback"),
        rows=(Axis("options", "options (first → second)", ("first_opts", "second_opts")),
              Axis("proto", "protocol", ("proto",)),
              Axis("family", "family", ("family",)),
              Axis("prober", "prober", ("prober",))),
        cell=("bind", "listen", "accepted_by", "received_by", "split", "wildcard_only", "wildcard_only_split",
              "after_close"),
        seed={"proto": "tcp", "family": "inet", "prober": "other_process"},
        split=("proto", "family", "prober"),
        groups=("proto", "family", "prober", "addresses"),
        meanings=(Meaning("takeover", {"accepted_by": ("second", "both")}),
                  Meaning("takeover", {"received_by": ("second", "both")})),
        description="Can another program take over a listener's connections, or a UDP port's datagrams (seeds "
                    "001, 003)? TCP: a first socket listens; a second one, in another process of the same user "
                    "(other_process) or of another user (other_user), binds the same port with its own options and "
                    "address, and listens. Where both listen, 16 clients connect: a cell says who accepted them "
                    "(first, second, both) and how many each (first/second), then who accepted a new connection "
                    "once the first listener had closed ('both 6/10, then second'). UDP: both sockets are bound; 16 "
                    "senders, each from a port of its own, send a datagram each to the first socket's address (or "
                    "the second's specific one): who received them and how many each; where one socket is the "
                    "wildcard, who received as many sent to an address only the wildcard covers ('wildcard only'); "
                    "then who received them after the first closed (refused: the sender was told no socket has the "
                    "port). A second socket that took any connection or datagram is a takeover: a UDP port shared "
                    "by accident loses the first program's datagrams. A cell that names a step (bind EADDRINUSE) is "
                    "where the second socket was refused."),
    "listener_drain": Layout(
        column="addr", column_order=("wildcard", "loopback"),
        rows=(Axis("opts", "options (every listener)", ("opts",)), Axis("family", "family", ("family",)),
              Axis("listeners", "listeners", ("listeners",)),
              Axis("tcp_migrate_req", "tcp_migrate_req", ("tcp_migrate_req",))),
        cell=("bind", "listen", "spread", "split", "drain", "queued", "moved", "reset", "lost"),
        steps_as_columns=True,
        meanings=(Meaning("lost", {"drain": ("reset", "mixed", "lost")}),),
        description="A server reload with SO_REUSEPORT (SO_REUSEPORT_LB where the host has it): `listeners` "
                    "listeners share a port; clients connect until each listener's accept queue holds connections "
                    "(read from the OS: TCP_INFO on Linux, SO_LISTENQLEN on FreeBSD; inconclusive where it cannot "
                    "say); nobody accepts. spread: whether every listener held some (all), one held them all (one), "
                    "or some; split: each listener's queue, the first first. Then the first listener (the old server) "
                    "closes without accepting: drain says what became of its queued connections (queued): moved to "
                    "the others and accepted there, reset (the client read a reset or an end of file), lost (neither "
                    "within 2 s), mixed. A drain that resets or loses connections is lost: a reload drops clients. "
                    "tcp_migrate_req is Linux's net.ipv4.tcp_migrate_req as the case read it (1: the kernel moves "
                    "them to another listener of the group)."),
    "socketpair_churn": Layout(
        column="opts", column_order=("none", "SO_REUSEADDR"),
        rows=(Axis("strategy", "strategy", ("strategy",)), Axis("pairs", "pairs", ("pairs",))),
        cell=("outcome", "check", "made", "failures", "retries", "miswired", "time_wait_left", "pairs_per_second"),
        steps_as_columns=True,
        meanings=(Meaning("takeover", {"check": ("miswired",)}),),
        description="`pairs` TCP socket pairs on 127.0.0.1 made and closed back to back (seed 000), as a "
                    "socketpair() emulation makes them: a listener, a client that connects, the accepted end; the "
                    "client end closes first, so each pair leaves a TIME_WAIT on the client's port. Strategies for "
                    "the ports: sequential (walking a window of 2,048 ports and wrapping round, no retry), "
                    "os_assigned (port 0), random (the whole range 1024-65535, retried on failure: seed 000's fix); "
                    "python_socketpair is the host Python's own socket.socketpair(). opts: SO_REUSEADDR on every "
                    "socket or none. check: miswired where an end was connected to a stray connection; made: pairs "
                    "whose two ends were connected to each other; failures: every failed call by step and error, "
                    "retried ones included; time_wait_left: TIME_WAIT entries left on the ports used; "
                    "pairs_per_second: the speed."),
}
CELL_TEXTS = {"bind_matrix": bind_listen_texts, "hijack": hijack_texts}

# What a value means where no lab's meaning decides it.
OUTCOME_MEANINGS = {OK: "ok", "EADDRINUSE": "refused", UNSUPPORTED: "unsupported", INCONCLUSIVE: "inconclusive",
                    ERROR: "error", "": "none"}


def pair_label(first, second):
    """'a' when both are a (or the second is empty), else 'a → b' (an option or address pair of a first and a
    second socket)."""
    first, second = filled(first).astype(object), filled(second).astype(object)
    return first.where((first == second) | (second == ""), first + PAIR_ARROW + second)


def axis_labels(frame, axis):
    """Each row's value of an axis: the column's value, or the pair's label (of the columns the frame has)."""
    columns = [column for column in axis.columns if column in frame.columns]
    if len(columns) == 2:
        return pair_label(frame[columns[0]], frame[columns[1]])
    return _text(frame, columns[0]) if columns else pd.Series("", index=frame.index, dtype=object)


def present_axes(layout, frame):
    """The layout's row axes with a value in the frame (a column a lab's agent does not have yet is left out)."""
    return tuple(axis for axis in layout.rows if any(
        column in frame.columns and filled(frame[column]).ne("").any() for column in axis.columns))


def group_labels(frame, layout):
    """Each row's value of each of the layout's picture groups that the frame has: {group: labels}."""
    axes = {axis.name: axis for axis in layout.rows + (layout.column,)}
    groups = {}
    for name in layout.groups:
        axis = axes.get(name, Axis(name, name, (name,)))
        if any(column in frame.columns and filled(frame[column]).ne("").any() for column in axis.columns):
            groups[name] = axis_labels(frame, axis)
    return groups


def lab_layout(lab):
    """The lab's entry of LAYOUTS; else its first parameter as columns and all the others as row axes."""
    if lab in LAYOUTS:
        return LAYOUTS[lab]
    parameters = module(lab).PARAMETERS
    return Layout(column=parameters[0], column_order=(),
                  rows=tuple(Axis(name, name, (name,)) for name in parameters[1:]))


def by_lab(frame, each):
    """each(rows of one lab, its layout) for every lab of the frame, as one Series in the frame's order (rows
    without a lab: each(rows, None))."""
    codes, labs = pd.factorize(frame["lab"]) if "lab" in frame.columns else (np.full(len(frame), -1), [])
    if len(labs) == 1 and codes.min(initial=0) == 0:  # one lab (the usual case): no copy of a big table
        return pd.Series(each(frame, lab_layout(labs[0])).to_numpy(), index=frame.index, dtype=object)
    result = np.empty(len(frame), dtype=object)
    for code in range(-1, len(labs)):
        rows = codes == code
        if rows.any():
            result[rows] = each(frame[rows], lab_layout(labs[code]) if code >= 0 else None).to_numpy()
    return pd.Series(result, index=frame.index, dtype=object)


def cell_texts(frame):
    """Each case's cell text as its lab's layout shows it, with MISMATCH_MARK where the verdict is mismatch."""
    texts = by_lab(frame, lambda part, layout: (
        _text(part, "outcome") if layout is None else
        CELL_TEXTS[part["lab"].iloc[0]](part) if part["lab"].iloc[0] in CELL_TEXTS else step_texts(part, layout.cell)))
    if "verdict" in frame.columns:
        texts = texts.where(frame["verdict"] != "mismatch", texts + MISMATCH_MARK)
    return texts


def value_meanings(values):
    """What a step's value or an outcome means by itself: OUTCOME_MEANINGS, another error name, or a value."""
    values = filled(values).astype(object)
    return values.map(OUTCOME_MEANINGS).where(values.isin(list(OUTCOME_MEANINGS)), np.where(
        values.isin(ERROR_NAMES), "other_error", "value")).astype(object)


def holds(frame, when):
    """Where every column of `when` holds one of its values (False where the frame lacks a column)."""
    mask = np.ones(len(frame), dtype=bool)
    for column, values in when.items():
        if column not in frame.columns:
            return np.zeros(len(frame), dtype=bool)
        mask &= frame[column].isin(values).to_numpy()
    return mask


def _case_meanings(distinct, layout):
    """The meaning of each (distinct) case: no result first, then the lab's meanings in order, then the outcome."""
    outcome = _text(distinct, "outcome")
    meaning = np.array(value_meanings(outcome), dtype=object)
    decided = _no_result(outcome).to_numpy()
    for rule in (layout.meanings if layout else ()):
        hit = holds(distinct, rule.when) & ~decided
        meaning[hit], decided = rule.meaning, decided | hit
    return meaning


def cell_meanings(frame):
    """Each case's meaning for its lab's question, a categorical of analysis.palette's names (in its order, so
    that the codes are the palette's), worked out once per distinct combination of the columns the lab's meanings
    read."""
    def lab_meanings(part, layout):
        columns = [column for column in dict.fromkeys(["outcome"] + [
            column for rule in (layout.meanings if layout else ()) for column in rule.when]) if column in part]
        codes, firsts = group_codes(part, columns)
        return pd.Series(_case_meanings(part[columns].iloc[firsts], layout)[codes], index=part.index, dtype=object)
    if "meaning" in frame.columns:  # report.write works them out once for every table and picture made from it
        return frame["meaning"]
    return pd.Series(pd.Categorical(by_lab(frame, lab_meanings), categories=palette.NAMES), index=frame.index)


def meaning_codes(meanings):
    """The palette codes of a Series of meanings (as cell_meanings gives them, or names)."""
    if isinstance(meanings.dtype, pd.CategoricalDtype) and tuple(meanings.cat.categories) == palette.NAMES:
        return meanings.cat.codes.to_numpy()
    return meanings.map({name: code for code, name in enumerate(palette.NAMES)}).to_numpy()


def expected_values(expected):
    """{step: (values...)} of an expectation text as judge() writes it ("bind=ok, listen=EADDRINUSE|EINVAL")."""
    pairs = [part.split("=", 1) for part in str(expected or "").split(", ") if "=" in part]
    return {step: tuple(values.split("|")) for step, values in pairs}


def step_cells(cases, layout):
    """A lab's cases one row per step of layout.cell that has a value (the case's columns, then `step`, `value`,
    `text` and `meaning`); a case without a result is one row, its outcome under the first step. A step's meaning:
    the lab's meanings that name that step, else what its value says; a mismatch is marked on the steps whose value
    the expectation does not allow (on the first step when none of them is named)."""
    outcome = _text(cases, "outcome")
    no_result = _no_result(outcome)
    steps = [step for step in layout.cell if step in cases.columns]
    parts = []
    for position, step in enumerate(steps):
        value = _text(cases, step).where(~no_result, outcome if position == 0 else "")
        parts.append(cases.assign(step=step, value=value)[value != ""])
    melted = pd.concat(parts) if parts else cases.assign(step="", value="")
    meaning = np.array(value_meanings(melted["value"]), dtype=object)
    decided = np.zeros(len(melted), dtype=bool)
    for rule in layout.meanings:
        for step in [column for column in rule.when if column in steps]:
            others = {column: values for column, values in rule.when.items() if column != step}
            hit = ((melted["step"] == step) & melted["value"].isin(rule.when[step])).to_numpy() & holds(
                melted, others) & ~decided
            meaning[hit], decided = rule.meaning, decided | hit
    no_result = _no_result(_text(melted, "outcome")).to_numpy()
    meaning[no_result] = value_meanings(_text(melted, "outcome")).to_numpy(dtype=object)[no_result]
    text = melted["value"].astype(object)
    if "verdict" in melted.columns:
        text = text.where(~_mismatch_marks(melted, steps[0]), text + MISMATCH_MARK)
    order = np.argsort(melted.index.to_numpy(), kind="stable")  # case by case, steps in the layout's order
    return melted.assign(text=text, meaning=meaning).iloc[order]


def _mismatch_marks(melted, first_step):
    """Where step_cells marks a mismatch: worked out once per distinct (step, value, expectation) of the mismatching
    cases."""
    wrong = (melted["verdict"] == "mismatch").to_numpy()
    cells = filled(melted.loc[wrong, ["step", "value", "expected"]])
    distinct = cells.drop_duplicates()
    allowed = [expected_values(expected) for expected in distinct["expected"]]
    distinct = distinct.assign(
        named=[step in values for step, values in zip(distinct["step"], allowed)],
        disagrees=[value not in values.get(step, (value,)) for step, value, values in zip(
            distinct["step"], distinct["value"], allowed)])
    flags = cells.merge(distinct, on=["step", "value", "expected"], how="left").set_axis(cells.index)
    case_named = flags["named"].groupby(level=0).transform("any")
    marks = np.zeros(len(melted), dtype=bool)
    marks[wrong] = (flags["disagrees"] | (~case_named & (cells["step"] == first_step))).to_numpy(dtype=bool)
    return marks
