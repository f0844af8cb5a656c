"""`why PORT`: what holds a port on a host now, whether a new server's bind() succeeds there now, and why, from what
the host's bind_matrix measured.

The agent's answer (labs/why.py: the port record, each holder, each option set's bind() tried now) is explained
here, holder by holder, with the bind_matrix cases that measured the same thing on that host:

- The holders become the matrix's earlier sockets ("groups"): a listener is LISTEN, or LISTEN+ESTABLISHED when
  connections it accepted are on the port too (they are that case's accepted end); a connection without a listener
  is ESTABLISHED, CLOSE_WAIT, FIN_WAIT_2 or TIME_WAIT; a bound socket BOUND; UDP BOUND or ESTABLISHED (connected).
  Other states (FIN_WAIT_1, LAST_ACK, ...) are not built by the matrix.
- What the tables do not show is a possibility each: the holder's options (no table shows SO_REUSEADDR or
  SO_REUSEPORT: every option set the host knows), the address a connection's listener was bound to (its own
  address, or the wildcard), IPV6_V6ONLY where the table does not say (inet6 or dual), and whose it is: the matrix's
  prober `other_process` when its uid is the agent's, `other_user` when it differs, both where unknown.
- Addresses are the matrix's names: the wildcard, loopback, v4mapped; another address stands for itself as
  loopback does (an `analog`), and two different specific addresses make no case of the matrix.
- Each possibility's case is looked up by its parameters in the host's runs under `runs` (newest first; the newest
  that witnessed it), then in its baseline; a case measured nowhere gets the documented expectation (the
  expectation tables' verdict for it, labelled documented) and the command that measures it.

For each option set: the bind() tried now, the matrix's answer (its bind, or the listen() that would fail after
it) over the possibilities, and whether they agree; with one group, the holder's options that agree with every
bind() tried now. Exit status: 0 when a bind() with the option set asked for (--opts, default none) succeeds now (or,
where it was not tried, the matrix says it succeeds whatever the holders' options), else 1.
"""
import ipaddress
import itertools
import os

import pandas as pd
from rich.table import Table
from rich.text import Text

from analysis import palette
from analysis.expectations import judge, load_expectations
from analysis.regress import host_cases, read_baseline_csv, read_facts
from formats import rundir
from formats.errors import UserError
from labs import bind_matrix
from labs.vocabulary import INCONCLUSIVE, ERROR, NO_OPTIONS, OK, UNSUPPORTED

LAB = "bind_matrix"
NO_RESULT = (INCONCLUSIVE, ERROR, UNSUPPORTED)
CONNECTION_STATES = ("ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT_2", "TIME_WAIT")
MATRIX_STATES = {"tcp": bind_matrix.TCP_STATES, "udp": bind_matrix.UDP_STATES}
FACT_COLUMNS = ("os_family", "os_release", "upstream_release", "os_version", "python")
KEY = ("proto", "family", "second_family", "state", "first_opts", "second_opts", "first_addr", "second_addr",
       "prober")
SHOWN_HOLDERS = 8  # holder lines printed; the rest are counted


# ------------------------------------------------------------------------------------------ holders as the matrix

def address_of(literal):
    """The address a literal names, IPv4 for a v4-mapped one (the same address for the kernel's IPv4 hash)."""
    address = ipaddress.ip_address(literal.split("%")[0])
    return address.ipv4_mapped if address.version == 6 and address.ipv4_mapped else address


def address_name(literal):
    """(the matrix's name, whether it only stands for the address) of an address literal."""
    raw = ipaddress.ip_address(literal.split("%")[0])
    if raw.is_unspecified:
        return "wildcard", False
    if raw.version == 6 and raw.ipv4_mapped:
        return "v4mapped", not raw.ipv4_mapped.is_loopback
    return "loopback", not raw.is_loopback


def families(entry):
    """The matrix families a holder may be: inet; inet6 or dual by IPV6_V6ONLY (a v4-mapped address is dual)."""
    if entry["family"] == "inet":
        return ("inet",)
    if entry["v6only"] is not None:
        return ("inet6",) if entry["v6only"] else ("dual",)
    if address_name(entry["local_address"])[0] == "v4mapped":
        return ("dual",)
    return ("inet6", "dual")


def probers(entry, uid):
    """The matrix's prober for a holder: the agent's own user, another user, or either where a uid is unknown."""
    if entry["uid"] is None or uid is None:
        return ("other_process", "other_user")
    return ("other_process",) if entry["uid"] == uid else ("other_user",)


def groups(proto, holders, uid):
    """The holders as the matrix's earlier sockets: [{state, table_state, holders (indexes), families, addresses
    (literals its socket may have been bound to), probers}], one per distinct kind; state None where the matrix
    builds no such state (table_state says which)."""
    states = {entry["state"] for entry in holders}
    accepted = proto == "tcp" and {"LISTEN", "ESTABLISHED"} <= states  # the listener's accepted connections
    found = {}
    for index, entry in enumerate(holders):
        state = entry["state"]
        if accepted and state == "ESTABLISHED":
            continue  # the accepted end of its listener's LISTEN+ESTABLISHED case
        if accepted and state == "LISTEN":
            state = "LISTEN+ESTABLISHED"
        matrix_state = state if state in MATRIX_STATES[proto] else None
        addresses = (entry["local_address"],)
        connected = state in CONNECTION_STATES or (proto == "udp" and state == "ESTABLISHED")
        if connected and address_name(entry["local_address"])[0] != "wildcard":
            # the listener it came from (or the UDP socket before its connect()) may have been bound to the wildcard
            addresses += (WILDCARD[entry["family"]],)
        key = (matrix_state, state, families(entry), addresses, probers(entry, uid))
        found.setdefault(key, []).append(index)
    connections = [index for index, entry in enumerate(holders) if accepted and entry["state"] == "ESTABLISHED"]
    return [{"state": matrix_state, "table_state": state,
             "holders": members + (connections if state == "LISTEN+ESTABLISHED" else []), "families": list(family),
             "addresses": list(addresses), "probers": list(prober)}
            for (matrix_state, state, family, addresses, prober), members in found.items()]


WILDCARD = {"inet": "0.0.0.0", "inet6": "::"}


def address_pair(first, second):
    """(first_addr, second_addr, analog) of two address literals as the matrix names them, or None where it has
    no such pair (two different specific addresses)."""
    first_name, first_analog = address_name(first)
    second_name, second_analog = address_name(second)
    if "wildcard" not in (first_name, second_name) and address_of(first) != address_of(second):
        return None
    return first_name, second_name, first_analog or second_analog


def possibilities(proto, group, option_sets, server_family, server_address, second_opts):
    """Every case of the matrix that may be the group's, for a new server's socket: dicts of KEY's columns plus
    `analog`; [] where the matrix has none (then `why` says why)."""
    if group["state"] is None:
        return []
    found = []
    for family, literal, prober, first_opts in itertools.product(group["families"], group["addresses"],
                                                                 group["probers"], option_sets):
        pair = address_pair(literal, server_address)
        if server_family != family and "second_family" not in bind_matrix.PARAMETERS:
            continue  # the matrix pairs sockets of one family only
        if pair is None or pair[0] not in bind_matrix.ADDRESSES[family] or \
                pair[1] not in bind_matrix.ADDRESSES[server_family]:
            continue
        found.append({"proto": proto, "family": family, "second_family": "" if server_family == family
                      else server_family, "state": group["state"], "first_opts": first_opts,
                      "second_opts": second_opts, "first_addr": pair[0], "second_addr": pair[1], "prober": prober,
                      "analog": pair[2]})
    return [dict(entry) for entry in {tuple(entry.items()): entry for entry in found}.values()]


# ------------------------------------------------------------------------------------------ what was measured

def key_of(row):
    values = dict(row)
    second = values.get("second_family") or ""
    values["second_family"] = "" if second in ("", values["family"]) else second
    return tuple(values.get(column) or "" for column in KEY)


class Measured:
    """The host's bind_matrix cases, looked up by KEY: the newest run under `folder` that witnessed each (or, where
    none did, the newest that ran it), then the host's baseline in `baselines`."""

    def __init__(self, host, folder, baselines):
        self.host, self.cases, self.sources = host, {}, []
        self.runs = [path for path in reversed(rundir.run_dirs(folder))] if os.path.isdir(folder) else []
        self.baseline = os.path.join(baselines, host + ".csv") if baselines else None
        self.read = 0

    def find(self, keys):
        """{key: case row} of the keys measured, reading further runs only while a key is missing."""
        keys = set(keys)
        while not self._settled(keys) and self.read < len(self.runs):
            self.read += 1
            self._take_run(self.runs[self.read - 1])
        if not self._settled(keys) and self.baseline is not None and os.path.exists(self.baseline):
            path, self.baseline = self.baseline, None
            table = read_baseline_csv(path, self.host)
            facts = read_facts(path[:-len(".csv")] + ".facts.json")
            self._take(table[table["lab"] == LAB], "baseline " + path, facts)
        return {key: self.cases[key] for key in keys if key in self.cases}

    def _settled(self, keys):
        return all(key in self.cases and self.cases[key]["outcome"] not in NO_RESULT for key in keys)

    def _take_run(self, run_dir):
        try:
            manifest = rundir.read_run(run_dir, with_logs=False).manifest
            if self.host not in manifest["hosts"] or not os.path.exists(rundir.log_path(run_dir, self.host)):
                return
            facts, frame = host_cases(run_dir, self.host)
        except UserError:
            return  # a run that cannot be read answers nothing here; `check` and `report` say what is wrong
        if "lab" in frame.columns:
            self._take(frame[frame["lab"] == LAB], "run " + manifest["run_id"], facts)

    def _take(self, frame, label, facts):
        self.sources.append((label, facts))
        columns = [column for column in KEY if column in frame.columns] + [
            column for column in ("case_id", "outcome", "bind", "listen", "witness") if column in frame.columns]
        for row in frame[columns].astype(object).where(frame[columns].notna(), "").to_dict(orient="records"):
            key = key_of(row)
            known = self.cases.get(key)
            if known is None or (known["outcome"] in NO_RESULT and row["outcome"] not in NO_RESULT):
                self.cases[key] = dict(row, source=label, os_release=facts.get("os_release", ""))


def result(case):
    """A case's answer as a new server meets it: the bind's outcome, or the listen() that fails after it."""
    if case["outcome"] in NO_RESULT:
        return case["outcome"]
    if case.get("bind") and case["bind"] != OK:
        return case["bind"]
    if case.get("listen") and case["listen"] != OK:
        return "listen " + case["listen"]
    return case.get("bind") or case["outcome"]


def documented(facts, host, rows, expectations):
    """{key: (expected, source)} of the documented expectation of each unmeasured possibility."""
    if not rows:
        return {}
    frame = pd.DataFrame([{column: row[column] for column in KEY} for row in rows]).assign(
        lab=LAB, host=host, outcome="", **{column: str(facts.get(column) or "") for column in FACT_COLUMNS})
    judged = judge(frame, load_expectations([expectations]))
    return {key_of(row): (expected, source) for row, expected, source in
            zip(rows, judged["expected"], judged["source"])}


# ------------------------------------------------------------------------------------------ the explanation

def explain(asked, host, runs, baselines, expectations, hosts_file=None):
    """The whole answer as data (the README documents its keys): `asked` is what the agent said (facts, port,
    holders, answers)."""
    facts, port, holders, answers = asked["facts"], asked["port"], asked["holders"], asked["answers"]
    proto, uid = port["proto"], port["uid"]
    option_sets = bind_matrix.option_sets(facts.get("options") or [])
    found = groups(proto, holders, uid)
    measured = Measured(host, runs, baselines)
    per_answer = []
    for answer in answers:
        cases = [(index, entry) for index, group in enumerate(found) for entry in
                 possibilities(proto, group, option_sets, port["family"], port["address"], answer["opts"])]
        per_answer.append((answer, cases))
    keys = [key_of(entry) for _, cases in per_answer for _, entry in cases]
    cases_found = measured.find(keys)
    missing = [entry for _, cases in per_answer for _, entry in cases if key_of(entry) not in cases_found]
    docs = documented(facts, host, missing, expectations)
    explained = []
    for answer, cases in per_answer:
        rows = []
        for index, entry in cases:
            key = key_of(entry)
            row = dict(group=index, **{column: entry[column] for column in KEY}, analog=entry["analog"],
                       measured=None, documented=None)
            if key in cases_found:
                case = cases_found[key]
                row["measured"] = {"source": case["source"], "case_id": case["case_id"], "outcome": case["outcome"],
                                   "bind": case.get("bind", ""), "listen": case.get("listen", ""),
                                   "witness": case.get("witness", ""), "os_release": case["os_release"],
                                   "result": result(case)}
            elif key in docs:
                row["documented"] = {"expected": docs[key][0], "source": docs[key][1]}
            rows.append(row)
        explained.append(dict(answer, explained=rows, matrix=matrix_answer(found, rows),
                              agrees=agreement(answer, found, rows)))
    asked_opts = answers[0]["opts"] if len(answers) == 1 else NO_OPTIONS
    chosen = next(entry for entry in explained if entry["opts"] == asked_opts)
    return {
        "host": host, "os_family": facts["os_family"], "os_release": facts["os_release"], "proto": proto,
        "port": port["port"], "address": port["address"], "family": port["family"], "uid": uid,
        "table": port["table"], "blind_spot": port.get("blind_spot", ""), "owners": port["owners"],
        "holders": holders, "groups": found, "answers": explained,
        "holder_options": holder_options(found, explained, option_sets),
        "measured_in": sorted({row["measured"]["source"] for entry in explained for row in entry["explained"]
                               if row["measured"]}),
        "measure": measure_command(host, hosts_file, missing, facts),
        "opts": asked_opts, "exit_status": exit_status(chosen),
    }


def measured_results(rows, group):
    return [row["measured"]["result"] for row in rows if row["group"] == group and row["measured"]
            and row["measured"]["outcome"] not in NO_RESULT]


def matrix_answer(found, rows):
    """The matrix's word on a bind with these options beside all the holders: ok (every possibility of every group
    ok), the error every possibility of some group gives, "depends" (on what the tables do not show), or "not
    measured"."""
    outcomes = [set(measured_results(rows, index)) for index in range(len(found))]
    if not found:
        return OK if not rows else "not measured"
    if any(not results for results in outcomes):
        return "not measured"
    for results in outcomes:
        if len(results) == 1 and results != {OK}:
            return next(iter(results))
    return OK if all(results == {OK} for results in outcomes) else "depends"


def bind_of(result_text):
    """The bind's own outcome in a case's result (a listen() failure came after a bind that succeeded)."""
    return OK if result_text.startswith("listen ") else result_text


def agreement(answer, found, rows):
    """Whether the bind() tried now is one the matrix gives for some possibility of the holders (None where it was
    not tried or nothing was measured): ok needs a possibility of each group that binds, an error one that gives
    it."""
    if not answer["tried"] or not found:
        return None
    binds = [{bind_of(result_text) for result_text in measured_results(rows, index)} for index in range(len(found))]
    if any(not results for results in binds):
        return None
    if answer["bind"] == OK:
        return all(OK in results for results in binds)
    return any(answer["bind"] in results for results in binds)


def holder_options(found, explained, option_sets):
    """With one group: the holder's option sets for which the matrix gives every bind() tried now (None where
    nothing was tried or measured, or where several groups share the answer)."""
    if len(found) != 1:
        return None
    tried = [entry for entry in explained if entry["tried"]]
    if not tried:
        return None
    agreeing, measured = [], False
    for first_opts in option_sets:
        measured_any = False
        for entry in tried:
            results = {bind_of(row["measured"]["result"]) for row in entry["explained"]
                       if row["first_opts"] == first_opts and row["measured"]
                       and row["measured"]["outcome"] not in NO_RESULT}
            measured_any = measured_any or bool(results)
            if results and entry["bind"] not in results:
                break
        else:
            if measured_any:
                agreeing.append(first_opts)
        measured = measured or measured_any
    return agreeing if measured else None


def exit_status(answer):
    if answer["tried"]:
        return 0 if answer["bind"] == OK else 1
    return 0 if answer["matrix"] == OK and answer["setsockopt"] != UNSUPPORTED else 1


def measure_command(host, hosts_file, missing, facts):
    """The command that measures the missing cases (a superset: every option pair of the states, families,
    addresses and probers they need), or None."""
    if not missing:
        return None
    words = ["./socklab", "run", "--host", host] + (["--hosts", hosts_file] if hosts_file else []) + [
        "--lab", LAB]
    for column in ("proto", "family", "second_family", "state", "first_addr", "second_addr", "prober"):
        values = sorted({row[column] for row in missing} - {""}, key=str)
        if values and column in bind_matrix.PARAMETERS:
            words += ["--where", "{}={}".format(column, ",".join(values))]
    command = " ".join(words)
    if not facts.get("admin") and any(row["prober"] == "other_user" for row in missing):
        command += "  (other_user needs the agent to run as root there)"
    return command


# ------------------------------------------------------------------------------------------ shown to a person

def meaning(outcome):
    if outcome == OK:
        return "ok"
    if outcome.endswith("EADDRINUSE"):
        return "refused"
    if outcome in (INCONCLUSIVE, UNSUPPORTED, ERROR):
        return outcome
    return "other_error"


def styled(outcome):
    return Text(" {} ".format(outcome), style=palette.rich_style(meaning(outcome)))


def endpoint(address, port):
    return "[{}]:{}".format(address, port) if ":" in address else "{}:{}".format(address, port)


def holder_line(entry):
    text = endpoint(entry["local_address"], entry["local_port"])
    if entry["remote_address"]:
        text += " ↔ " + endpoint(entry["remote_address"], entry["remote_port"])
    owner = []
    if entry["uid"] is not None:
        owner.append("uid {}".format(entry["uid"]))
    if entry["pids"]:
        more = " +{}".format(len(entry["pids"]) - 1) if len(entry["pids"]) > 1 else ""
        owner.append("pid {}{} {}".format(entry["pids"][0], more, entry["process"]).strip())
    elif entry["inode"] is None and entry["state"] in ("TIME_WAIT", "FIN_WAIT_2") and entry["expires"] is not None:
        owner.append("the kernel's (no process)")
    elif entry["inode"] is not None:
        owner.append("process not visible to this user")
    if entry["expires"] is not None:
        owner.append("{:.1f} s left".format(entry["expires"]))
    return entry["state"], text, ", ".join(owner) or "owner unknown"


def possibility_label(row, varying):
    parts = [short(row["first_opts"])]
    if "first_addr" in varying:
        parts.append("listener on " + row["first_addr"])
    if "family" in varying:
        parts.append(row["family"])
    if "prober" in varying:
        parts.append("same user" if row["prober"] == "other_process" else "another user")
    return " ".join(parts)


def documented_result(expected):
    """The result text of a documented expectation ("bind=ok, listen=EADDRINUSE" -> "listen EADDRINUSE")."""
    steps = dict(part.split("=", 1) for part in expected.split(", "))
    if steps.get("bind", OK) != OK:
        return steps["bind"]
    if steps.get("listen", OK) != OK:
        return "listen " + steps["listen"]
    return steps.get("outcome", steps.get("bind", OK))


def said(row):
    """(what a possibility's case says, whether it is documented rather than measured), or None for neither."""
    if row["measured"]:
        return row["measured"]["result"], False
    if row["documented"] and row["documented"]["expected"]:
        return documented_result(row["documented"]["expected"]), True
    return None


def group_text(rows):
    """What the matrix says over one group's possibilities: "EADDRINUSE whatever the holder's options", or "ok if
    SO_REUSEPORT, ...; EADDRINUSE if none, ..."; "documented:" before what no run measured."""
    known = [(row, said(row)) for row in rows if said(row)]
    if not known:
        return "not measured, not documented"
    kinds = {documented for _, (_, documented) in known}
    prefix = {frozenset([True]): "documented: ", frozenset([False, True]): "measured and documented: "}.get(
        frozenset(kinds), "")
    varying = [column for column in ("first_addr", "family", "prober") if len({row[column] for row in rows}) > 1]
    by_result = {}
    for row, (outcome, _) in known:
        by_result.setdefault(outcome, []).append(row)
    if len(by_result) == 1:
        return "{}{}, whatever the holder's options".format(prefix, next(iter(by_result)))
    parts = []
    ordered = sorted(by_result.items(), key=lambda item: (item[0] != OK, -len(item[1]) if item[0] != OK else 0))
    for number, (outcome, members) in enumerate(ordered):
        if number == len(ordered) - 1:
            parts.append("else " + outcome)
            break
        labels = []
        for first_opts in dict.fromkeys(row["first_opts"] for row in members):
            # an option set whose every variant gives this outcome is named alone
            if all(said_outcome == outcome for row, (said_outcome, _) in known if row["first_opts"] == first_opts):
                labels.append(short(first_opts))
            else:
                labels += [possibility_label(row, varying) for row in members if row["first_opts"] == first_opts]
        parts.append("{} if it has {}".format(outcome, ", ".join(labels)) if number == 0 else
                     "{} if {}".format(outcome, ", ".join(labels)))
    return prefix + "; ".join(parts)


def short(opts):
    """An option set without the SO_ of each option, for the terminal's narrow column."""
    return "+".join(name[3:] if name.startswith("SO_") else name for name in opts.split("+"))


def short_source(source):
    """A source's citation up to its first comma or parenthesis: its name, for the terminal (--json has it
    whole)."""
    cut = min([index for index in (source.find(", "), source.find(" (")) if index > 0] or [len(source)])
    return source[:cut]


def group_title(found, index):
    group = found[index]
    count = len(group["holders"])
    state = group["state"] or group["table_state"]
    return "{}{}".format(state, " ×{}".format(count) if count > 1 else "")


def show(document, console):
    """The answer in a few lines: who holds the port, each option set's bind() now beside the matrix, where the
    cases come from, what the holder's options may be, the exit status."""
    console.print("why {}/{} on {}: {} {}, asked as uid {}".format(
        document["port"], document["proto"], document["host"], document["os_family"], document["os_release"],
        document["uid"] if document["uid"] is not None else "-"), markup=False)
    console.print("  table {}; owners: {}".format(document["table"], document["owners"]), markup=False)
    if document["blind_spot"]:
        console.print("  the table cannot show everything here: " + document["blind_spot"], markup=False)
    holders = document["holders"]
    if holders:
        table = Table(box=None, padding=(0, 1), show_header=False, title_justify="left")
        for entry in holders[:SHOWN_HOLDERS]:
            table.add_row(*holder_line(entry))
        console.print("held by:", markup=False)
        console.print(table)
        if len(holders) > SHOWN_HOLDERS:
            console.print("  … and {} more".format(len(holders) - SHOWN_HOLDERS), markup=False)
    else:
        console.print("held by: nothing (no socket has local port {})".format(document["port"]), markup=False)
    found = document["groups"]
    answers = Table(box=None, padding=(0, 1), title_justify="left", title=(
        "bind() now on {} ({}), from another process, without listen():".format(
            endpoint(document["address"], document["port"]), document["family"])))
    answers.add_column("your options")
    answers.add_column("now")
    answers.add_column("the matrix: measured, else documented")
    for entry in document["answers"]:
        now = styled(entry["bind"]) if entry["tried"] else Text(entry["detail"] if entry["setsockopt"] ==
                                                                UNSUPPORTED else "not tried")
        words = []
        for index in range(len(found)):
            rows = [row for row in entry["explained"] if row["group"] == index]
            text = group_text(rows) if rows else no_case_text(found[index])
            words.append(("{}: ".format(group_title(found, index)) if len(found) > 1 else "") + text)
        if entry["agrees"] is False:
            words.append("DISAGREES with what was tried now")
        answers.add_row(short(entry["opts"]), now, "; ".join(words) or "nothing holds the port")
    console.print(answers)
    for entry in document["answers"]:
        if not entry["tried"] and entry["setsockopt"] != UNSUPPORTED:
            console.print("  not tried: " + entry["detail"][len("not tried: "):], markup=False)
            break
    for line in case_lines(document):
        console.print(line, markup=False, soft_wrap=True)  # a case id stays whole, to copy
    chosen = next(entry for entry in document["answers"] if entry["opts"] == document["opts"])
    if chosen["tried"]:
        how = "succeeds now" if chosen["bind"] == OK else "does not succeed now ({})".format(chosen["bind"])
    else:
        how = "succeeds, as the matrix says" if document["exit_status"] == 0 else \
            "is not known to succeed (not tried; the matrix: {})".format(chosen["matrix"])
    console.print("exit {}: a bind with {} {}".format(document["exit_status"], document["opts"], how), markup=False)


def no_case_text(group):
    if group["state"] is None:
        return "the matrix builds no {}".format(group["table_state"])
    return "the matrix has no case for this address pair or family pair"


def case_lines(document):
    """Where the matrix's answers come from: per group the case ids (the holder's and your options as <>), the runs;
    the holder's options the answers agree with; what is not measured and the command that measures it."""
    lines = []
    found = document["groups"]
    rows = [row for entry in document["answers"] for row in entry["explained"]]
    for index, group in enumerate(found):
        measured = [row["measured"] for row in rows if row["group"] == index and row["measured"]]
        if not measured:
            continue
        ids = [case["case_id"].split("/") for case in measured]
        pattern = "/".join(parts[0] if len(set(parts)) == 1 else "|".join(dict.fromkeys(parts))
                           for parts in zip(*ids))
        first, second = bind_matrix.PARAMETERS.index("first_opts"), bind_matrix.PARAMETERS.index("second_opts")
        words = pattern.split("/")
        if len(words) > second:
            words[first], words[second] = "<holder's>", "<yours>"
        sources = sorted({case["source"] for case in measured})
        analog = any(row["analog"] for row in rows if row["group"] == index)
        lines.append("measured{} in {}{}:\n  {}".format(
            " (" + group_title(found, index) + ")" if len(found) > 1 else "", ", ".join(sources),
            " (loopback standing for the address)" if analog else "", "/".join(words)))
        releases = {case["os_release"] for case in measured} - {document["os_release"]}
        if releases:
            lines.append("  measured under {}; the host runs {} now".format(", ".join(sorted(releases)),
                                                                            document["os_release"]))
    if document["holder_options"] is not None:
        agreeing = document["holder_options"]
        lines.append("holder's options agreeing with the binds now: {}".format(
            " or ".join(map(short, agreeing)) if agreeing else
            "none (a finding: the host answers otherwise than it measured)"))
    documented_rows = [row for row in rows if row["documented"]]
    if documented_rows:
        sources = {short_source(part) for row in documented_rows for part in row["documented"]["source"].split(" | ")
                   if part}
        lines.append("documented by: " + ("; ".join(sorted(sources)) if sources else "no source"))
    if document["measure"]:
        lines.append("not measured for {}: {}".format(document["host"], document["measure"]))
    return lines
