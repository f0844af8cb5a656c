"""The unix_sockets lab on this machine's real AF_UNIX sockets: the documented Linux answers, the witness gates, the
race's judge, and the hosts this machine is not (no AF_UNIX, no abstract names, no ctypes) made by monkeypatching."""
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

import labs
from labs import hostfacts, unix_sockets
from labs.sockopts import platform_family
from tests.conftest import REPO

needs_linux = pytest.mark.skipif(platform_family() != "linux", reason="the Linux answers and abstract names")

# What this machine answers (Linux: unix(7), accept(2), connect(2); expectations/unix_sockets.yaml): case id ->
# (witness, {step: value}).
LINUX = {
    "bind_live/path/0": ("live_socket", {"bind": "EADDRINUSE"}),
    "bind_live/abstract/0": ("live_socket", {"bind": "EADDRINUSE"}),
    "bind_stale/path/0": ("stale_socket_file", {"bind": "EADDRINUSE"}),
    "bind_stale/abstract/0": ("owner_exited", {"bind": "ok"}),
    "bind_regular_file/path/0": ("regular_file", {"bind": "EADDRINUSE"}),
    "connect_stale/path/1": ("stale_socket_file", {"connect": "ECONNREFUSED"}),
    "connect_stale/abstract/1": ("owner_exited", {"connect": "ECONNREFUSED"}),
    "connect_regular_file/path/1": ("regular_file", {"connect": "ECONNREFUSED"}),
    "names_named/path/1": ("connected", {"bind": "ok", "connect": "ok", "accept": "ok", "peer_name": "path",
                                         "server_name": "path", "own_name": "path"}),
    "names_named/abstract/1": ("connected", {"bind": "ok", "connect": "ok", "accept": "ok",
                                             "peer_name": "abstract", "server_name": "abstract",
                                             "own_name": "abstract"}),
    "names_unnamed/path/1": ("connected", {"connect": "ok", "accept": "ok", "peer_name": "unnamed",
                                           "server_name": "path", "own_name": "unnamed"}),
    "names_unnamed/abstract/1": ("connected", {"connect": "ok", "accept": "ok", "peer_name": "unnamed",
                                               "server_name": "abstract", "own_name": "unnamed"}),
    "accept_nonblocking/path/1": ("live_socket", {"accept": "EAGAIN", "connect": "ok", "poll_accept": "ok"}),
    "accept_nonblocking/abstract/1": ("live_socket", {"accept": "EAGAIN", "connect": "ok", "poll_accept": "ok"}),
    "unix_to_inet/none/1": ("LISTEN", {"connect": "EINVAL"}),
    "inet_to_unix/path/1": ("live_socket", {"connect": "EAFNOSUPPORT"}),
    "inet_to_unix/abstract/1": ("live_socket", {"connect": "EAFNOSUPPORT"}),
    "race/path/100": ("pending=100", {"connect": "ok", "answers": "own"}),
    "race/abstract/100": ("pending=100", {"connect": "ok", "answers": "own"}),
}


@pytest.fixture
def context():
    host = hostfacts.collect("test")
    context = unix_sockets.Context(host)
    yield context
    context.close()
    assert not os.path.exists(context.folder or "")  # every case's files and the folder itself are gone


def case(scenario, namespace="path", clients=None):
    default = unix_sockets.SCENARIOS[scenario][1]
    return {"scenario": scenario, "namespace": namespace, "clients": str(default if clients is None else clients)}


def steps_of(record):
    return {step: record[step] for step in unix_sockets.STEPS if step in record}


def test_the_table_has_each_scenario_in_its_namespaces():
    cases = list(unix_sockets.cases({"os_family": "windows"}))
    assert [labs.case_id(unix_sockets, params) for params in cases] == list(LINUX)
    assert all(params["namespace"] in unix_sockets.AXES["namespace"] for params in cases)
    assert set(unix_sockets.STEP_VALUES) <= set(unix_sockets.STEPS)


@needs_linux
@pytest.mark.parametrize("case_id", list(LINUX))
def test_linux_gives_the_documented_answer(context, case_id):
    witness, steps = LINUX[case_id]
    record = unix_sockets.run_case(context, dict(zip(unix_sockets.PARAMETERS, case_id.split("/"))))
    assert (record["witness"], steps_of(record)) == (witness, steps), record["detail"]
    # the outcome is the first refused step's errno, in the order the case ran them
    refused = [value for value in steps.values() if value not in ("ok",) + unix_sockets.NAME_VALUES
               + unix_sockets.STEP_VALUES["answers"]]
    assert record["outcome"] == (refused[0] if refused else "ok")


@needs_linux
def test_the_race_counts_every_crossed_answer(context, monkeypatch):
    """A server that hands each connection the id read from the next one: every client is cross-wired, which
    the judge must count from the clients' own reads."""
    def crossing_server(listener, clients):
        conns = [listener.accept()[0] for _ in range(clients)]
        ids = [unix_sockets.read_exactly(conn, unix_sockets.ID_SIZE) for conn in conns]
        for conn, answer in zip(conns, ids[1:] + ids[:1]):
            conn.sendall(answer)
            conn.close()
        return clients

    monkeypatch.setattr(unix_sockets, "serve_race", crossing_server)
    record = unix_sockets.run_case(context, case("race", clients=10))
    assert (record["answers"], record["cross_wired"], record["witness"]) == ("crossed", 10, "pending=10")


@needs_linux
def test_a_race_client_without_an_answer_is_missing(context, monkeypatch):
    def silent_server(listener, clients):
        for _ in range(clients):
            listener.accept()[0].close()
        return 0

    monkeypatch.setattr(unix_sockets, "serve_race", silent_server)
    record = unix_sockets.run_case(context, case("race", clients=5))
    assert (record["answers"], record["cross_wired"]) == ("missing", 0)


def test_a_race_of_one_client_is_inconclusive(context):
    if not context.has_unix:
        pytest.skip("no AF_UNIX")
    record = unix_sockets.run_case(context, case("race", clients=1))
    assert record["outcome"] == "inconclusive" and "answers" not in record


def test_a_stale_name_not_left_behind_is_inconclusive(context, monkeypatch):
    """The child unlinks its socket file before exiting: no stale file, so no result."""
    if not context.has_unix:
        pytest.skip("no AF_UNIX")
    tidy_child = unix_sockets.STALE_CHILD + "import os\nos.unlink(name)\n"
    monkeypatch.setattr(unix_sockets, "STALE_CHILD", tidy_child)
    for scenario in ("bind_stale", "connect_stale"):
        record = unix_sockets.run_case(context, case(scenario))
        assert record["outcome"] == "inconclusive" and "is not a socket file" in record["detail"]
        assert "bind" not in record and "connect" not in record


def test_a_child_that_cannot_bind_is_inconclusive(context, monkeypatch):
    if not context.has_unix:
        pytest.skip("no AF_UNIX")
    monkeypatch.setattr(unix_sockets, "STALE_CHILD", "raise SystemExit(3)\n")
    record = unix_sockets.run_case(context, case("connect_stale"))
    assert record["outcome"] == "inconclusive" and "status 3" in record["detail"]


def test_without_af_unix_every_case_is_unsupported(monkeypatch):
    """CPython on Windows has no socket.AF_UNIX: the lab records that and opens nothing."""
    monkeypatch.delattr(socket, "AF_UNIX", raising=False)
    context = unix_sockets.Context({"os_family": "windows"})
    records = [unix_sockets.run_case(context, params) for params in unix_sockets.cases({"os_family": "windows"})]
    context.close()
    assert context.folder is None
    assert {record["outcome"] for record in records} == {"unsupported"}
    assert all("AF_UNIX" in record["detail"] for record in records)


def test_abstract_names_are_unsupported_off_linux(context):
    context.os_family = "freebsd"
    record = unix_sockets.run_case(context, case("bind_live", "abstract"))
    assert (record["outcome"], record["detail"]) == (
        "unsupported", "abstract names: CPython passes them to the OS on Linux only")


def test_without_ctypes_the_wrong_family_cases_are_unsupported(context, monkeypatch):
    monkeypatch.setattr(unix_sockets, "ctypes", None)
    for scenario, namespace in (("unix_to_inet", "none"), ("inet_to_unix", "path")):
        assert unix_sockets.run_case(context, case(scenario, namespace))["outcome"] == "unsupported"


@needs_linux
def test_a_c_library_ctypes_cannot_open_makes_the_wrong_family_cases_unsupported(context, monkeypatch):
    def no_library(*args, **kwargs):
        raise OSError("dlopen failed")

    monkeypatch.setattr(unix_sockets.ctypes, "CDLL", no_library)
    record = unix_sockets.run_case(context, case("inet_to_unix", "abstract"))
    assert (record["outcome"], record["witness"]) == ("unsupported", "live_socket")
    assert "dlopen failed" in record["detail"] and "connect" not in record


@pytest.mark.parametrize("os_family", ["linux", "cygwin", "freebsd", "darwin"])
def test_raw_ipv4_addresses_follow_each_systems_layout(os_family):
    address = unix_sockets.sockaddr_in(os_family, "127.0.0.1", 0x1234)
    assert len(address) == 16 and address[4:8] == b"\x7f\x00\x00\x01" and address[2:4] == b"\x12\x34"
    if os_family in unix_sockets.SA_LEN_FAMILIES:
        assert (address[0], address[1]) == (16, socket.AF_INET)
    else:
        assert int.from_bytes(address[:2], sys.byteorder) == socket.AF_INET


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX")
@pytest.mark.parametrize("os_family, size", [("linux", 110), ("freebsd", 106)])
def test_raw_unix_addresses_cover_a_path_wholly_and_an_abstract_name_exactly(os_family, size):
    class Host:
        pass
    host = Host()
    host.os_family, host.sun_path_size = os_family, size - 2
    path = unix_sockets.sockaddr_un(host, "/tmp/x")
    assert len(path) == size and path[2:9] == b"/tmp/x\0"
    abstract = unix_sockets.sockaddr_un(host, b"\0socklab")
    assert len(abstract) == 2 + 8 and abstract.endswith(b"\0socklab")
    if os_family in unix_sockets.SA_LEN_FAMILIES:
        assert (path[0], abstract[0]) == (size, 10)


@needs_linux
def test_the_agent_reports_connects_per_second_for_the_race_and_leaves_nothing_behind(tmp_path):
    """`python3 -m labs --lab unix_sockets --where scenario=race --where clients=20`, as `./socklab bench` runs it."""
    before = set(os.listdir(str(tmp_path)))
    done = subprocess.run([sys.executable, "-m", "labs", "--lab", "unix_sockets", "--where", "scenario=race",
                           "--where", "clients=20"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=True, env=dict(os.environ, TMPDIR=str(tmp_path)))
    cases = [json.loads(line) for line in done.stdout.splitlines() if '"record": "case"' in line]
    assert [record["case_id"] for record in cases] == ["race/path/20", "race/abstract/20"]
    assert all(record["answers"] == "own" and record["cross_wired"] == 0 for record in cases)
    assert all(record["connects_per_second"] > 0 for record in cases)
    assert set(os.listdir(str(tmp_path))) == before  # the work folder for path names is removed


def test_a_case_leaves_no_thread_or_process(context):
    if not context.has_unix:
        pytest.skip("no AF_UNIX")
    threads = threading.active_count()
    for params in (case("race", clients=30), case("bind_stale"), case("connect_stale")):
        unix_sockets.run_case(context, params)
    assert threading.active_count() == threads
    assert os.listdir(context.folder) == []
