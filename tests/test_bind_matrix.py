"""The bind_matrix lab on this machine's real sockets: seed 004's Linux rows, repeatability, the witness gate."""
import contextlib
import json
import os
import socket
import subprocess
import sys

import pytest

import labs
from labs import bind_matrix, endpoints, hostfacts
from labs.sockopts import Options, platform_family
from tests.conftest import REPO

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
    """The agent as the local transport runs it; its case records."""
    done = subprocess.run([sys.executable, "-m", "labs", "--lab", "bind_matrix"] + list(arguments), cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=True)
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
    pairs = sum(len(names) ** 2 for names in bind_matrix.ADDRESSES.values())
    assert len(cases) == (7 + 2) * options ** 2 * pairs * 3
    assert len({labs.case_id(bind_matrix, case) for case in cases}) == len(cases)
    if platform_family() == "linux":
        assert bind_matrix.option_sets(host["options"]) == [
            "none", "SO_REUSEADDR", "SO_REUSEPORT", "SO_REUSEADDR+SO_REUSEPORT"]


def test_a_state_that_is_not_witnessed_is_inconclusive(context, monkeypatch):
    """The TIME_WAIT case, driven only as far as FIN_WAIT_2 (the client never closes): a real socket in the wrong
    state, which the witness must catch."""
    _, context = context
    monkeypatch.setitem(bind_matrix.DRIVERS, ("tcp", "TIME_WAIT"), bind_matrix.drive_fin_wait_2)
    monkeypatch.setattr(bind_matrix, "STATE_DEADLINE", 0.3)
    params = dict(zip(bind_matrix.PARAMETERS, ("tcp", "inet", "TIME_WAIT", "none", "none", "wildcard", "wildcard",
                                               "same_process")))
    record = bind_matrix.run_case(context, params)
    assert record["outcome"] == "inconclusive"
    assert record["witness"] == "FIN_WAIT_2"
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
                                                   "same_process")))
        record = bind_matrix.run_case(context, params)
    assert (record["outcome"], record["witness"], record["bind"]) == ("EADDRINUSE", "LISTEN", "EADDRINUSE")


def test_fresh_ports_taken_every_time_make_the_case_inconclusive_not_unsupported(context, monkeypatch):
    _, context = context
    with socket.create_server(("127.0.0.1", 0)) as taken:
        monkeypatch.setattr(endpoints, "fresh_port", lambda options, proto: taken.getsockname()[1])
        params = dict(zip(bind_matrix.PARAMETERS, ("tcp", "inet", "BOUND", "none", "none", "loopback", "loopback",
                                                   "same_process")))
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
