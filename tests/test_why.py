"""`./socklab why PORT` on real sockets: ports this machine holds in each state (driven as bind_matrix drives them),
UDP, another user's listener, a namespace host over SSH; each answer checked against a real small bind_matrix run
made here; the listener keeps accepting every connection while `why` tries its binds; the mistakes it refuses. Then
its readers on connection tables recorded on other systems (tests/data/netstat/README.md)."""
import contextlib
import json
import os
import pathlib
import pwd
import socket
import struct
import subprocess
import sys
import threading

import pytest

from formats.table import load as load_run
from labs import bind_matrix, holders
from labs.polling import poll
from labs.vocabulary import split_options
from tests.conftest import REPO, case_params, only_run, requires_root, socklab_command

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="drives Linux's sock_diag and /proc")

# The measured run: TCP and UDP, IPv4, the states the tests hold, a listener on the wildcard or loopback, the new
# server on the wildcard, the same user and another.
MATRIX = ["--lab", "bind_matrix", "--where", "family=inet", "--where", "second_addr=wildcard",
          "--where", "state=BOUND,LISTEN,LISTEN+ESTABLISHED,ESTABLISHED,FIN_WAIT_2,TIME_WAIT",
          "--where", "first_addr=wildcard,loopback", "--where", "prober=other_process,other_user"]
NOBODY = "nobody"


def socklab(*args, timeout=300):
    return subprocess.run(socklab_command(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """(runs folder, the run's bind_matrix cases of local by case_id)."""
    out = tmp_path_factory.mktemp("why-runs")
    done = socklab("run", "--host", "local", "--out", str(out), *MATRIX)
    assert done.returncode == 0, done.stdout + done.stderr
    table = load_run(only_run(out)[0])
    return str(out), table.set_index("case_id")


@pytest.fixture(scope="module")
def context(host):
    with contextlib.closing(bind_matrix.Context(host)) as made:
        yield made


def why(port, *args, runs=None):
    """(exit status, the --json document) of `./socklab why PORT ARGS --json`."""
    done = socklab("why", str(port), "--json", *(["--runs", runs] if runs else []), *args)
    assert done.returncode in (0, 1) and done.stdout, done.stderr  # 2 would be a mistake of the test
    document = json.loads(done.stdout)
    assert done.returncode == document["exit_status"]
    return done.returncode, document


def holding(context, state, first_opts, proto="tcp", first_addr="wildcard"):
    """A bind_matrix earlier socket driven into `state` on a fresh port (the case's first socket)."""
    params = case_params(bind_matrix, proto, "inet", state, first_opts, "none", first_addr, "wildcard",
                         "other_process")
    earlier = bind_matrix.Earlier(context, params)
    bind_matrix.DRIVERS[proto, state](earlier)
    return earlier


def measured_case(cases, answer, prober, first_opts, first_addr="wildcard"):
    """The explanation's row for the holder's true options, and the run's case it cites."""
    (row,) = [row for row in answer["explained"] if row["first_opts"] == first_opts
              and row["first_addr"] == first_addr and row["prober"] == prober]
    case = cases.loc[row["measured"]["case_id"]]
    assert (case["first_opts"], case["second_opts"], case["first_addr"], case["prober"]) == (
        first_opts, answer["opts"], first_addr, prober)
    return row, case


EXPECTED_HOLDERS = {"LISTEN": ["LISTEN"], "LISTEN+ESTABLISHED": ["ESTABLISHED", "LISTEN"],
                    "ESTABLISHED": ["ESTABLISHED"], "FIN_WAIT_2": ["FIN_WAIT_2"], "TIME_WAIT": ["TIME_WAIT"]}


@pytest.mark.parametrize("first_opts", ["none", "SO_REUSEADDR+SO_REUSEPORT", "SO_REUSEADDR"])
@pytest.mark.parametrize("state", list(EXPECTED_HOLDERS))
def test_why_answers_as_the_measured_matrix_in_each_state(measured, context, state, first_opts):
    """Every option set's bind() now is the measured case's bind for the holder's true options, the case that is
    cited; the holders are the driven sockets, with this process as owner, or the kernel's with its time left."""
    runs, cases = measured
    earlier = holding(context, state, first_opts)
    try:
        status, document = why(earlier.port, runs=runs)
    finally:
        earlier.close()
    assert sorted(entry["state"] for entry in document["holders"]) == EXPECTED_HOLDERS[state]
    for entry in document["holders"]:
        if entry["state"] in ("FIN_WAIT_2", "TIME_WAIT"):  # closed: a timewait entry of the kernel's
            assert entry["pids"] == [] and entry["uid"] is None and 0 < entry["expires"] <= 60
        else:
            assert entry["pids"] == [os.getpid()] and entry["uid"] == os.geteuid()
    (group,) = document["groups"]
    assert group["state"] == state
    assert len(document["answers"]) == len(bind_matrix.option_sets(context.options.known))
    for answer in document["answers"]:
        assert answer["tried"]
        row, case = measured_case(cases, answer, "other_process", first_opts)
        assert case["outcome"] != "inconclusive", case["case_id"]
        assert answer["bind"] == case["bind"] == row["measured"]["bind"], case["case_id"]
        assert answer["agrees"] is True
    assert first_opts in document["holder_options"]
    none = next(answer for answer in document["answers"] if answer["opts"] == "none")
    assert status == (0 if none["bind"] == "ok" else 1)


def test_why_prints_the_holders_the_answers_and_the_cases_in_a_few_lines(measured, context):
    runs, cases = measured
    earlier = holding(context, "LISTEN", "SO_REUSEPORT")
    try:
        done = socklab("why", str(earlier.port), "--runs", runs)
    finally:
        earlier.close()
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) <= 16
    assert any("LISTEN" in line and "pid {}".format(os.getpid()) in line for line in lines)
    assert any(line.split()[:2] == ["REUSEPORT", "ok"] for line in lines)
    run_id = os.path.basename(only_run(pathlib.Path(runs))[0])
    at = lines.index("measured in run {}:".format(run_id))
    assert lines[at + 1] == "  tcp/inet/LISTEN/<holder's>/<yours>/wildcard/wildcard/other_process"
    assert "holder's options agreeing with the binds now: REUSEPORT or REUSEADDR+REUSEPORT" in lines
    assert lines[-1] == "exit 1: a bind with none does not succeed now (EADDRINUSE)"


def accepting(listener, accepted, stop):
    """Accepts on `listener` until `stop`, each connection read to its end and closed; counts them."""
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            connection, _ = listener.accept()
        except socket.timeout:
            continue
        with connection:
            connection.settimeout(5)
            if connection.recv(1) == b"x":
                accepted.append(1)


def connecting(port, results, stop, least):
    """Connects in a loop until `stop` (and at least `least` times): each connection sends one byte and closes;
    records each outcome (ok, or the error)."""
    while not stop.is_set() or len(results) < least:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(b"x")
            results.append("ok")
        except OSError as exc:
            results.append(type(exc).__name__)


def test_the_listener_accepts_every_connection_during_and_after_why(context):
    """A SO_REUSEPORT listener (so the binds with SO_REUSEPORT succeed beside it) while clients connect in a loop:
    every connection made during `why`, and after it, is accepted by the listener; none is refused or reset."""
    earlier = holding(context, "LISTEN", "SO_REUSEADDR+SO_REUSEPORT")
    accepted, during, after, stop_accepting, stop_during = [], [], [], threading.Event(), threading.Event()
    threads = [threading.Thread(target=accepting, args=(earlier.first, accepted, stop_accepting)),
               threading.Thread(target=connecting, args=(earlier.port, during, stop_during, 1))]
    for thread in threads:
        thread.start()
    try:
        status, document = why(earlier.port)
        stop_during.set()
        threads[1].join()
        connecting(earlier.port, after, stop_during, 50)  # stop_during is set: 50 connections, then it returns
        binds = {entry["opts"]: entry["bind"] for entry in document["answers"]}
        assert binds["SO_REUSEPORT"] == "ok" and binds["none"] == "EADDRINUSE" and status == 1
        assert set(during) == {"ok"} and set(after) == {"ok"}, (during, after)
        made = len(during) + len(after)
        assert poll(lambda: len(accepted), lambda count: count >= made, 10) == made
    finally:
        stop_accepting.set()
        stop_during.set()
        for thread in threads:
            thread.join()
        earlier.close()


def test_udp_is_answered_from_the_matrix_and_the_holder_gets_every_datagram(measured, context):
    """A UDP socket with SO_REUSEPORT (a bind with it would share its datagrams): nothing is tried, each answer is
    the measured case's, and the holder receives every datagram sent while `why` runs."""
    runs, cases = measured
    earlier = holding(context, "BOUND", "SO_REUSEPORT", proto="udp")
    sender, received, stop = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), [], threading.Event()
    earlier.first.settimeout(2)

    def exchange():
        """One datagram at a time, each awaited before the next (so none is dropped for a full receive buffer): a
        datagram another socket took is a timeout here."""
        sent = 0
        while not stop.is_set() or sent < 20:
            sender.sendto(struct.pack("!I", sent), ("127.0.0.1", earlier.port))
            try:
                received.append(struct.unpack("!I", earlier.first.recv(16))[0])
            except socket.timeout:
                received.append(None)
            sent += 1

    threads = [threading.Thread(target=exchange)]
    for thread in threads:
        thread.start()
    try:
        status, document = why(earlier.port, "--proto", "udp", runs=runs)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sender.close()
        earlier.close()
    assert received == list(range(len(received))) and len(received) >= 20
    (holder,) = document["holders"]
    assert (holder["state"], holder["pids"]) == ("BOUND", [os.getpid()])
    for answer in document["answers"]:
        assert not answer["tried"] and "datagrams" in answer["detail"]
        row, case = measured_case(cases, answer, "other_process", "SO_REUSEPORT")
        assert row["measured"]["bind"] == case["bind"] and case["outcome"] != "inconclusive"
    none = next(answer for answer in document["answers"] if answer["opts"] == "none")
    assert none["matrix"] == "EADDRINUSE" and status == 1


def test_a_udp_port_nothing_holds_is_tried(context):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("0.0.0.0", 0))
        port = probe.getsockname()[1]
    status, document = why(port, "--proto", "udp", "--opts", "SO_REUSEADDR")
    assert document["holders"] == [] and status == 0
    (answer,) = document["answers"]
    assert (answer["opts"], answer["tried"], answer["bind"]) == ("SO_REUSEADDR", True, "ok")


LISTENER = """
import os, socket, sys
sock = socket.socket()
for name in sys.argv[1].split("+"):
    if name != "none":
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, name), 1)
sock.bind(("0.0.0.0", 0))
sock.listen(8)
print(sock.getsockname()[1], flush=True)
sys.stdin.read()
"""


def listener_as(user, first_opts, prefix=()):
    """A listener in a process of its own run as `user` (setpriv, so the program it runs is that user's, its
    /proc/PID/fd readable by them), after `prefix` (ip netns exec NAME); (process, port)."""
    entry = pwd.getpwnam(user)
    process = subprocess.Popen(list(prefix) + ["setpriv", "--reuid", str(entry.pw_uid), "--regid",
                                               str(entry.pw_gid), "--clear-groups", sys.executable, "-c", LISTENER,
                                               first_opts], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return process, int(process.stdout.readline())


@requires_root
def test_another_users_listener_is_explained_by_the_other_user_cases(measured):
    """A listener of `nobody` (SO_REUSEPORT) asked about as root: its uid and process are shown, its case is
    other_user, and SO_REUSEPORT does not let root share it (the uids differ), as the run measured."""
    runs, cases = measured
    process, port = listener_as(NOBODY, "SO_REUSEPORT")
    try:
        status, document = why(port, runs=runs)
    finally:
        process.stdin.close()
        process.wait()
    (holder,) = document["holders"]
    assert holder["uid"] == pwd.getpwnam(NOBODY).pw_uid and holder["pids"] == [process.pid]
    assert document["groups"][0]["probers"] == ["other_user"]
    for answer in document["answers"]:
        _, case = measured_case(cases, answer, "other_user", "SO_REUSEPORT")
        assert answer["bind"] == case["bind"]
    assert {answer["opts"]: answer["bind"] for answer in document["answers"]}["SO_REUSEPORT"] == "EADDRINUSE"
    assert status == 1


def test_nothing_measured_gives_the_documented_expectation_and_the_command_that_measures_it(context, tmp_path):
    earlier = holding(context, "LISTEN", "none")
    try:
        _, document = why(earlier.port, "--baseline", str(tmp_path / "none"), runs=str(tmp_path / "empty"))
        assert document["measured_in"] == []
        for answer in document["answers"]:
            assert all(row["measured"] is None and row["documented"]["source"] for row in answer["explained"])
        command = document["measure"].split()
        assert command[:6] == ["./socklab", "run", "--host", "local", "--lab", "bind_matrix"]
        assert "state=LISTEN" in command and "proto=tcp" in command
        done = socklab(*command[1:], "--out", str(tmp_path / "runs"))
        assert done.returncode == 0, done.stdout + done.stderr
        _, again = why(earlier.port, runs=str(tmp_path / "runs"))
    finally:
        earlier.close()
    assert again["measure"] is None and len(again["measured_in"]) == 1
    assert all(answer["agrees"] for answer in again["answers"])


@pytest.mark.parametrize("args, message", [
    (["port"], "error: PORT: 'port' is not a port (1-65535)"),
    (["70000"], "error: PORT: '70000' is not a port (1-65535)"),
    (["80", "--proto", "sctp"], "error: --proto: 'sctp' is not tcp or udp"),
    (["80", "--opts", "SO_REUSE"], "error: --opts: 'SO_REUSE' is not an option set"),
    (["80", "--address", "1.2.3"], "error: --address: '1.2.3' is not an IPv4 or IPv6 address"),
    (["80", "--host", "nosuch"], "error: hosts.yaml: unknown host or group 'nosuch'"),
])
def test_mistakes_are_one_line_and_exit_2(args, message):
    done = socklab("why", *args)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(message), line


@requires_root
def test_a_namespace_host_over_ssh(tmp_path):
    """A lab host in a network namespace, reached over SSH: a small bind_matrix run there, then a listener of its
    user in its namespace, asked about through the same inventory: the holder and each answer as that run
    measured."""
    from testbed.lab import Lab
    lab = Lab.up(str(tmp_path / "lab"), count=1)
    try:
        (host,) = lab.hosts
        uid = pwd.getpwnam(host.user).pw_uid  # the lab's user is gone once the lab is down
        done = socklab("run", "--host", host.name, "--hosts", lab.inventory, "--out", str(tmp_path / "runs"),
                       "--lab", "bind_matrix", "--where", "proto=tcp", "--where", "family=inet",
                       "--where", "state=LISTEN", "--where", "first_addr=wildcard", "--where", "second_addr=wildcard",
                       "--where", "prober=other_process")
        assert done.returncode == 0, done.stdout + done.stderr
        cases = load_run(only_run(tmp_path / "runs")[0]).set_index("case_id")
        process, port = listener_as(host.user, "SO_REUSEADDR", ["ip", "netns", "exec", host.netns])
        try:
            status, document = why(port, "--host", host.name, "--hosts", lab.inventory, runs=str(tmp_path / "runs"))
        finally:
            process.stdin.close()
            process.wait()
    finally:
        lab.down()
    (holder,) = document["holders"]
    assert holder["uid"] == uid == document["uid"]
    assert holder["pids"] and holder["process"].startswith("python")
    for answer in document["answers"]:
        assert answer["tried"]
        _, case = measured_case(cases, answer, "other_process", "SO_REUSEADDR")
        assert answer["bind"] == case["bind"]
    assert status == 1


# --- readers on recorded output ----------------------------------------------------------------------------------

def recorded(name):
    with open(os.path.join(REPO, "tests", "data", "netstat", name), newline="") as stream:
        return stream.read()


def test_proc_net_holders_of_a_recorded_table():
    """Linux 6.18's /proc/net/tcp with the README's sockets: 60000 a listener and its accepted connection, 60003 a
    TIME_WAIT with 0x176F clock ticks (59.99 s) left, owned by no process."""
    text = recorded("linux-6.18_proc-net-tcp.txt")
    listener, accepted = holders.proc_net_holders(text, 60000, "tcp")
    assert (listener["state"], listener["local_address"], listener["remote_address"], listener["inode"]) == (
        "LISTEN", "127.0.0.1", "", 8535)
    assert (accepted["state"], accepted["remote_address"], accepted["remote_port"], accepted["uid"]) == (
        "ESTABLISHED", "127.0.0.1", 52596, 0)
    (waiting,) = holders.proc_net_holders(text, 60003, "tcp")
    assert (waiting["state"], waiting["uid"], waiting["inode"], waiting["expires"]) == ("TIME_WAIT", None, None, 59.99)
    (six,) = holders.proc_net_holders(recorded("linux-6.18_proc-net-tcp6.txt"), 60004, "tcp")
    assert (six["family"], six["local_address"], six["state"]) == ("inet6", "::1", "LISTEN")


def test_windows_netstat_holders_carry_the_owning_pid():
    """Windows 10's `netstat -aon` (tests/data/netstat/README.md)."""
    text = recorded("windows-10_netstat-aon_jc.txt")
    listeners = holders.netstat_windows_holders(text, 135, "tcp")
    assert [(entry["family"], entry["local_address"], entry["state"], entry["pids"]) for entry in listeners][0] == (
        "inet", "0.0.0.0", "LISTEN", [1712])
    (connection,) = holders.netstat_windows_holders(text, 1031, "tcp")
    assert (connection["state"], connection["remote_port"], connection["pids"]) == ("ESTABLISHED", 1032, [10644])


def test_bsd_netstat_holders_name_the_family():
    """FreeBSD 12's `netstat -an` (tests/data/netstat/README.md): tcp4 and tcp6 listeners on *.22, one
    connection."""
    found = holders.netstat_bsd_holders(recorded("freebsd-12_netstat-an_jc.txt"), 22, "tcp")
    assert [(entry["family"], entry["v6only"], entry["local_address"], entry["state"]) for entry in found] == [
        ("inet", None, "192.168.71.163", "ESTABLISHED"), ("inet", None, "0.0.0.0", "LISTEN"),
        ("inet6", True, "::", "LISTEN")]
    assert found[0]["remote_address"] == "192.168.71.1" and found[0]["remote_port"] == 56321
    (udp,) = [entry for entry in holders.netstat_bsd_holders(recorded("freebsd-12_netstat-an_jc.txt"), 514, "udp")
              if entry["family"] == "inet"]
    assert udp["state"] == "BOUND" and udp["remote_address"] == ""


def test_lsof_names_the_owners_of_netstat_rows():
    """lsof's field output, run here on real sockets (it is the same program on FreeBSD and macOS), matched with
    holders as netstat lists them: the listener and the accepted end are this process's."""
    with socket.socket(socket.AF_INET6) as listener:
        listener.bind(("::", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, peer = listener.accept()
            with accepted:
                found = [holders.holder("inet6", "LISTEN", ("::", port), v6only=False),
                         holders.holder("inet6", "ESTABLISHED", ("::ffff:127.0.0.1", port), ("127.0.0.1", peer[1]))]
                how = holders.with_lsof(found, "tcp", port)
    assert how.startswith("processes and uids from lsof")
    assert [(entry["pids"], entry["uid"]) for entry in found] == [([os.getpid()], os.geteuid())] * 2


def ip_helper_rows(rows, proto, ipv6):
    """A table as GetExtended{Tcp,Udp}Table fills it (constructed from tcpmib.h / udpmib.h, not recorded): DWORD
    count, then rows of (local, port, remote, remote port, state, pid)."""
    out = struct.pack("<I", len(rows))
    for local, port, remote, remote_port, state, pid in rows:
        local, remote = socket.inet_pton(socket.AF_INET6 if ipv6 else socket.AF_INET, local), \
            socket.inet_pton(socket.AF_INET6 if ipv6 else socket.AF_INET, remote)
        port, remote_port = struct.pack(">H", port), struct.pack(">H", remote_port)
        if proto == "tcp" and not ipv6:
            out += struct.pack("<I4s2s2x4s2s2xI", state, local, port, remote, remote_port, pid)
        elif proto == "tcp":
            out += struct.pack("<16sI2s2x16sI2s2xII", local, 0, port, remote, 0, remote_port, state, pid)
        elif not ipv6:
            out += struct.pack("<4s2s2xI", local, port, pid)
        else:
            out += struct.pack("<16sI2s2xI", local, 0, port, pid)
    return out


@pytest.mark.parametrize("ipv6", [False, True])
def test_ip_helper_holders_carry_the_owning_pid(ipv6):
    any_address, loopback = ("::", "::1") if ipv6 else ("0.0.0.0", "127.0.0.1")
    tcp = ip_helper_rows([(any_address, 8080, any_address, 0, 2, 4242), (loopback, 8080, loopback, 50000, 11, 0),
                          (loopback, 50000, loopback, 8080, 5, 77)], "tcp", ipv6)
    listener, waiting = holders.ip_helper_holders(tcp, 8080, "tcp", ipv6)
    assert (listener["state"], listener["local_address"], listener["remote_address"], listener["pids"]) == (
        "LISTEN", any_address, "", [4242])
    assert (waiting["state"], waiting["remote_port"], waiting["pids"]) == ("TIME_WAIT", 50000, [])
    udp = ip_helper_rows([(loopback, 53, any_address, 0, None, 9)], "udp", ipv6)
    (bound,) = holders.ip_helper_holders(udp, 53, "udp", ipv6)
    assert (bound["state"], bound["family"], bound["pids"]) == ("BOUND", "inet6" if ipv6 else "inet", [9])
