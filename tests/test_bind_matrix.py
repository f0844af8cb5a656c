"""The bind_matrix lab on this machine's real sockets: seed 004's Linux rows, repeatability, the witness gate."""
import contextlib
import gzip
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

import labs
from labs import bind_matrix, endpoints, hijack, hostfacts
from labs.sockopts import Options, platform_family
from tests.conftest import REPO, in_own_network

SEED_CELLS = ["--where", "proto=tcp", "--where", "family=inet", "--where", "first_addr=wildcard",
              "--where", "second_addr=wildcard", "--where", "prober=other_process"]
# Seed 004, "結果一覧": Linux 2.4.20 / 2.6.18 / 2.6.24, same options on both sockets, bind() of the second.
SEED_004_LINUX = {
    ("none", "LISTEN"): "EADDRINUSE", ("none", "LISTEN+ESTABLISHED"): "EADDRINUSE",
    ("none", "FIN_WAIT_2"): "EADDRINUSE", ("none", "TIME_WAIT"): "EADDRINUSE",
    ("SO_REUSEADDR", "LISTEN"): "EADDRINUSE", ("SO_REUSEADDR", "LISTEN+ESTABLISHED"): "EADDRINUSE",
    ("SO_REUSEADDR", "FIN_WAIT_2"): "ok", ("SO_REUSEADDR", "TIME_WAIT"): "ok",
}
needs_linux = pytest.mark.skipif(platform_family() != "linux", reason="the seed's Linux rows need Linux")
needs_root = pytest.mark.skipif(not hostfacts.is_admin(), reason="other_user needs root")


def run_agent(*arguments):
    """The agent as the local transport runs it; its case records. As root, in a network namespace of its own: the
    tests that compare two runs case by case then compare what the OS does, never another program's socket that
    took one of a case's ports meanwhile (on a shared machine, a bound-only one the witness cannot see)."""
    command = [sys.executable, "-m", "labs", "--lab", "bind_matrix"] + list(arguments)
    if os.geteuid() == 0 and shutil.which("unshare"):
        command = in_own_network(command)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=True)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0]["record"] == "host" and records[-1]["record"] == "end"
    return [record for record in records if record["record"] == "case"]


@pytest.fixture
def context(host):
    with contextlib.closing(bind_matrix.Context(host)) as context:
        yield host, context


@needs_linux
def test_seed_004_linux_rows_are_reproduced():
    states = ",".join(state for _, state in SEED_004_LINUX)
    cases = run_agent(*SEED_CELLS, "--where", "first_opts=none,SO_REUSEADDR", "--where", "state=" + states)
    same = [case for case in cases if case["first_opts"] == case["second_opts"]]
    assert all(case["witness"] == case["state"] for case in same)
    assert {(case["first_opts"], case["state"]): case["bind"] for case in same} == SEED_004_LINUX


def test_the_whole_matrix_twice_gives_the_same_outcome_in_every_witnessed_case():
    assert_same_witnessed_outcomes(run_agent(), run_agent())


def test_a_case_gives_the_same_outcome_in_a_batch_of_one_and_of_64():
    """The whole matrix with K=1 and K=64: every case witnessed in both runs has the same outcome and steps, so a
    case's result does not depend on the cases beside it (distinct fresh ports, SO_REUSEPORT groups and TIME_WAITs
    of one batch included)."""
    assert_same_witnessed_outcomes(run_agent("--batch", "1", "--workers", "1"),
                                   run_agent("--batch", "64", "--workers", "1"))


def test_worker_processes_give_the_cases_in_order_with_the_same_outcomes():
    """The whole matrix in one process and spread over two worker processes: the same cases in the plan's order,
    the same outcome in every case witnessed in both."""
    assert_same_witnessed_outcomes(run_agent("--workers", "1"), run_agent("--workers", "2"))


def assert_same_witnessed_outcomes(first, second):
    assert [case["case_id"] for case in first] == [case["case_id"] for case in second]
    witnessed = [(a, b) for a, b in zip(first, second) if "inconclusive" not in (a["outcome"], b["outcome"])]
    assert len(witnessed) >= 0.99 * len(first)
    differ = [(a["case_id"], a["outcome"], b["outcome"]) for a, b in witnessed
              if (a["outcome"], a.get("bind"), a.get("listen"), a["witness"]) !=
              (b["outcome"], b.get("bind"), b.get("listen"), b["witness"])]
    assert differ == []
    # the cross-family cases are among them, witnessed as well as the others
    cross = [case for case in first if case["second_family"]]
    assert len(cross) > len(first) / 2
    assert sum(1 for a, _ in witnessed if a["second_family"]) >= 0.99 * len(cross)


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads /proc/net")
def test_a_whole_table_reader_reads_each_table_once_per_batch(host):
    """A batch of 40 LISTEN cases (a state that shows at once) under the /proc/net reader: each of its two TCP
    files is read once for all 40."""
    with contextlib.closing(bind_matrix.Context(dict(host, witness="/proc/net"))) as context:
        batch = [case for case in bind_matrix.cases(host) if case["proto"] == "tcp" and case["state"] == "LISTEN"
                 and case["prober"] == "same_process"][:40]
        records = bind_matrix.run_batch(context, batch)
        assert [record["witness"] for record in records] == ["LISTEN"] * 40
        assert context.witness.reads == {"tcp": 1, "tcp6": 1}


def test_workers_port_shares_split_the_ephemeral_range():
    """Three workers' shares: disjoint, together the whole range but Linux's reserved ports; a share offers each of
    its ports after its random draws; fresh ports of a share (real binds on this machine) are in it."""
    shares = [endpoints.PortShare(index, 3, (32768, 60999)) for index in range(3)]
    ports = [list(share.candidates())[endpoints.PortShare.DRAWS:] for share in shares]
    assert sorted(port for share in ports for port in share) == [
        port for port in range(32768, 61000) if port not in endpoints.reserved_ports()]
    options = Options(platform_family())
    try:
        endpoints.set_port_share(1, 3, (32768, 60999))
        drawn = {endpoints.fresh_port(options, proto) for proto in ("tcp", "udp") for _ in range(100)}
    finally:
        endpoints.SHARE[0] = None
    assert drawn <= set(ports[1])


def test_batch_size_follows_the_host():
    """K: descriptors and ephemeral ports bound it, MAX_BATCH caps it."""
    linux = {"sysctls": {"net.ipv4.ip_local_port_range": "32768 60999"}}
    freebsd = {"sysctls": {"net.inet.ip.portrange.first": "49152", "net.inet.ip.portrange.last": "49407"}}
    assert bind_matrix.ephemeral_ports(linux) == 28232
    assert bind_matrix.ephemeral_ports(freebsd) == 256
    assert bind_matrix.ephemeral_ports({"sysctls": {}}) == 16384  # IANA's range: Windows, macOS
    assert bind_matrix.batch_size(freebsd) == 256 // 8 // bind_matrix.CASE_PORTS
    expected = min(bind_matrix.MAX_BATCH, bind_matrix.descriptor_limit() // 2 // bind_matrix.CASE_DESCRIPTORS,
                   28232 // 8 // bind_matrix.CASE_PORTS)
    assert bind_matrix.batch_size(linux) == expected
    # two workers' batches at once share the port budget
    assert bind_matrix.batch_size(freebsd, workers=2) == 256 // 8 // bind_matrix.CASE_PORTS // 2


def test_every_axis_is_covered(context):
    host, _ = context
    cases = list(bind_matrix.cases(host))
    options = len(bind_matrix.option_sets(host["options"]))
    # every family's addresses with every family's (the same family: the cases of before; then the other two)
    pairs = sum(len(bind_matrix.ADDRESSES[first]) * len(bind_matrix.ADDRESSES[second])
                for first in bind_matrix.ADDRESSES for second in bind_matrix.ADDRESSES)
    assert len(cases) == (7 + 2) * options ** 2 * pairs * 3
    assert len({labs.case_id(bind_matrix, case) for case in cases}) == len(cases)
    if platform_family() == "linux":
        assert bind_matrix.option_sets(host["options"]) == [
            "none", "SO_REUSEADDR", "SO_REUSEPORT", "SO_REUSEADDR+SO_REUSEPORT"]


# The case ids of bind_matrix and hijack before second_family and hijack's proto existed, made from main's code at
# the commit in its "made_from" (81dd0d7): labs.case_id over each lab's cases() for a host with each system's
# options (admin), in plan order; the whole list for Linux, its sha256 (the ids joined by newlines) for all four.
BEFORE = os.path.join(REPO, "tests", "data", "case_ids_before_issue15.json.gz")
ARCHIVE = os.path.join(REPO, "archive", "seed004-2010")


def before():
    with gzip.open(BEFORE, "rt") as stream:
        return json.load(stream)


def old_cases(lab, options):
    """The ids, in plan order, of today's cases of `lab` that have the value every case had before its ID_DEFAULT
    parameter was added."""
    column, value = lab.ID_DEFAULT
    return [labs.case_id(lab, params) for params in lab.cases({"options": options, "admin": True})
            if params[column] == value]


@pytest.mark.parametrize("lab", [bind_matrix, hijack], ids=["bind_matrix", "hijack"])
def test_the_cases_of_before_keep_their_ids(lab):
    """Today's cases with second_family empty (hijack: proto tcp) are the cases of before, ids and order unchanged,
    on every system's options; every other case's id is an old one with its new value after a /."""
    name, made = lab.__name__.split(".")[-1], before()
    assert old_cases(lab, made["hosts"]["linux"]) == made["linux_case_ids"][name]
    for system, options in made["hosts"].items():
        ids = old_cases(lab, options)
        assert (len(ids), hashlib.sha256("\n".join(ids).encode()).hexdigest()) == (
            made["digests"][system][name]["cases"], made["digests"][system][name]["sha256"]), system
    column, value = lab.ID_DEFAULT
    old = set(made["linux_case_ids"][name])
    new = [params for params in lab.cases({"options": made["hosts"]["linux"], "admin": True})
           if params[column] != value]
    assert new
    for params in new:
        key = labs.case_id(lab, params)
        assert key == labs.case_id(lab, dict(params, **{column: value})) + "/" + params[column]
        assert key not in old and labs.parameters(lab, key) == params


def test_the_archived_run_keeps_its_case_ids():
    """Seed 004's published table, imported as a run before second_family existed: each of its cases is a case of
    today's matrix with that id and those parameters (second_family empty, as the log reader gives it)."""
    from formats import hostlog
    today = {labs.case_id(bind_matrix, params): params
             for params in bind_matrix.cases({"options": ["SO_REUSEADDR", "SO_REUSEPORT", "SO_EXCLUSIVEADDRUSE"],
                                              "admin": True})}
    archived = [case for name in sorted(os.listdir(ARCHIVE)) if name.endswith(".jsonl")
                for case in hostlog.read(os.path.join(ARCHIVE, name)).cases if case["lab"] == "bind_matrix"]
    assert len(archived) > 40
    for case in archived:
        assert {column: case[column] for column in bind_matrix.PARAMETERS} == today[case["case_id"]]


def test_a_state_that_is_not_witnessed_is_inconclusive(context, monkeypatch):
    """The TIME_WAIT case, driven only as far as FIN_WAIT_2 (the client never closes): a real socket in the wrong
    state, which the witness must catch."""
    _, context = context
    monkeypatch.setitem(bind_matrix.DRIVERS, ("tcp", "TIME_WAIT"), bind_matrix.drive_fin_wait_2)
    monkeypatch.setattr(bind_matrix, "STATE_DEADLINE", 0.3)
    params = dict(zip(bind_matrix.PARAMETERS, ("tcp", "inet", "TIME_WAIT", "none", "none", "wildcard", "wildcard",
                                               "same_process", "")))
    record = bind_matrix.run_case(context, params)
    assert record["outcome"] == "inconclusive"
    assert record["witness"] == "FIN_WAIT_2"
    assert "bind" not in record


FIN_WAIT_2_CASES = ["--where", "proto=tcp", "--where", "state=FIN_WAIT_2", "--where", "first_addr=wildcard",
                    "--where", "second_addr=wildcard", "--where", "first_opts=none,SO_REUSEPORT"]


@needs_linux
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="a network namespace of its own")
def test_a_fin_wait_2_kept_as_a_full_socket_is_not_the_cases_state():
    """With tcp_fin_timeout above 60 s Linux keeps every closed end's FIN_WAIT_2 as a full socket (__tcp_close),
    where bind() applies the owner check it waives for the usual timewait entry: such a case is inconclusive, its
    witness and detail say why; with the default 60 s the same cases are witnessed."""
    def cases(fin_timeout):
        command = in_own_network([sys.executable, "-m", "labs", "--lab", "bind_matrix"] + FIN_WAIT_2_CASES,
                                 {"net.ipv4.tcp_fin_timeout": fin_timeout})
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
        return [record for record in map(json.loads, done.stdout.splitlines()) if record["record"] == "case"]

    full = cases(120)
    assert full and all(case["outcome"] == "inconclusive" and case["witness"] == "FIN_WAIT_2 (full socket)" and
                        "FIN_WAIT_2 as a full socket" in case["detail"] for case in full)
    usual = cases(60)
    assert [case["case_id"] for case in usual] == [case["case_id"] for case in full]
    assert all(case["outcome"] != "inconclusive" and case["witness"] == "FIN_WAIT_2" for case in usual)


# bind_wildcard.c's TCP_F(bind_wildcard, plain) pairs (Linux 6.12's selftest; expected_errno[1]): the second
# socket of another family than the first, both bound only, no options, in one process.
CROSS_FAMILY_LINUX = [
    (("inet", "wildcard", "inet6", "wildcard"), "ok"),          # v4_any_v6_any_only
    (("inet", "wildcard", "dual", "wildcard"), "EADDRINUSE"),   # v4_any_v6_any
    (("dual", "wildcard", "inet", "loopback"), "EADDRINUSE"),   # v6_any_v4_local
    (("inet6", "wildcard", "inet", "loopback"), "ok"),          # v6_any_only_v4_local
    (("inet", "loopback", "dual", "v4mapped"), "EADDRINUSE"),   # v4_local_v6_v4mapped_local
    (("inet", "loopback", "dual", "loopback"), "ok"),           # v4_local_v6_local
]


@needs_linux
@pytest.mark.parametrize("pair, bind", CROSS_FAMILY_LINUX, ids=["/".join(pair) for pair, _ in CROSS_FAMILY_LINUX])
def test_a_second_socket_of_another_family(context, pair, bind):
    _, context = context
    family, first_addr, second_family, second_addr = pair
    record = bind_matrix.run_case(context, dict(zip(bind_matrix.PARAMETERS, (
        "tcp", family, "BOUND", "none", "none", first_addr, second_addr, "same_process", second_family))))
    assert (record["witness"], record["bind"]) == ("BOUND", bind)


def test_a_socket_of_the_other_family_on_the_port_makes_the_case_inconclusive(context, monkeypatch):
    """An IPv4 listener's case, with an IPv6-only listener on its port too (which the OS allows beside it): the
    witness reads both families, sees the stranger, and the case is inconclusive."""
    _, context = context
    strangers = []

    def listen_beside_an_ipv6_listener(earlier):
        bind_matrix.drive_listen(earlier)
        stranger = endpoints.new_socket(context.options, "tcp", "inet6", ())
        strangers.append(stranger)
        stranger.bind(("::", earlier.port))
        stranger.listen(1)

    monkeypatch.setitem(bind_matrix.DRIVERS, ("tcp", "LISTEN"), listen_beside_an_ipv6_listener)
    monkeypatch.setattr(bind_matrix, "STATE_DEADLINE", 0.3)
    try:
        record = bind_matrix.run_case(context, dict(zip(bind_matrix.PARAMETERS, (
            "tcp", "inet", "LISTEN", "none", "none", "wildcard", "wildcard", "same_process", "inet6"))))
    finally:
        for stranger in strangers:
            stranger.close()
    assert strangers and record["outcome"] == "inconclusive"
    assert "bind" not in record


# fresh_port() made to draw a port a real listener already holds, as if a connect() had been given it as its local
# port between the probe and the bind (gVisor does so even over a port another connection holds: labs/endpoints.py)

def test_a_fresh_port_taken_before_the_first_bind_draws_another(context, monkeypatch):
    _, context = context
    free = endpoints.fresh_port(context.options, "tcp")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        draws = iter([taken.getsockname()[1], free])
        monkeypatch.setattr(endpoints, "fresh_port", lambda options, proto: next(draws))
        params = dict(zip(bind_matrix.PARAMETERS, ("tcp", "inet", "LISTEN", "none", "none", "loopback", "loopback",
                                                   "same_process", "")))
        record = bind_matrix.run_case(context, params)
    assert (record["outcome"], record["witness"], record["bind"]) == ("EADDRINUSE", "LISTEN", "EADDRINUSE")


def test_fresh_ports_taken_every_time_make_the_case_inconclusive_not_unsupported(context, monkeypatch):
    _, context = context
    with socket.create_server(("127.0.0.1", 0)) as taken:
        monkeypatch.setattr(endpoints, "fresh_port", lambda options, proto: taken.getsockname()[1])
        params = dict(zip(bind_matrix.PARAMETERS, ("tcp", "inet", "BOUND", "none", "none", "loopback", "loopback",
                                                   "same_process", "")))
        record = bind_matrix.run_case(context, params)
    assert record["outcome"] == "inconclusive"
    assert record["detail"] == ("first socket bind: EADDRINUSE on 3 fresh ports in a row (each taken between its "
                                "probe and the bind)")

@pytest.mark.parametrize("proto, family", [("udp", "inet"), ("udp", "dual"), ("tcp", "dual"), ("tcp", "inet6")])
def test_cases_are_witnessed_in_each_protocol_and_family(context, proto, family):
    host, context = context
    chosen = [case for case in bind_matrix.cases(host) if case["proto"] == proto and case["family"] == family
              and case["prober"] == "same_process" and case["first_opts"] == case["second_opts"] == "none"]
    records = [bind_matrix.run_case(context, case) for case in chosen]
    assert [record["witness"] for record in records] == [case["state"] for case in chosen]


@needs_root
def test_other_user_prober_runs_unprivileged(context):
    _, context = context
    prober = context.probers["other_user"]
    # Once it answers, it has dropped to the other user: every second socket it makes is that user's.
    assert prober.try_second({"proto": "tcp", "family": "inet", "addr": "loopback", "port": 0, "opts": []})["bind"] == "ok"
    pid = prober.process.pid
    with open("/proc/{}/status".format(pid)) as status:
        uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
    assert uids[0] != "0" and len(set(uids)) == 1


def test_probers_end_with_their_context(host):
    context = bind_matrix.Context(host)
    processes = [prober.process for prober in context.probers.values() if hasattr(prober, "process")]
    context.close()
    assert processes and all(process.poll() is not None for process in processes)


def agent_processes():
    """Agents, probers and workers started from this checkout (they run with it as their working directory)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/{}/cmdline".format(pid), "rb") as stream:
                command = stream.read().split(b"\0")
            cwd = os.readlink("/proc/{}/cwd".format(pid))
        except OSError:
            continue
        if {b"labs", b"labs.prober", b"labs.workers"} & set(command) and cwd == REPO:
            found.append(pid)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_an_agent_run_leaves_no_process_behind():
    run_agent(*SEED_CELLS, "--where", "state=LISTEN", "--batch", "4", "--workers", "2")  # 16 cases, 2 workers
    assert agent_processes() == []
