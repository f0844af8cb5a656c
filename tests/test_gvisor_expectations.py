"""gVisor's expectation tables (expectations/gvisor*.yaml): every row is gVisor's and cites google/gvisor at the
release Debian packages; they never judge a Linux result, nor Linux's rows a gVisor one; they say what netstack's
sources say where it differs from Linux; and the cases a real runsc sandbox gives are judged by them. Also the test
bed's runsc: Debian's, installed when missing (root)."""
import json
import os
import re
import subprocess

import pandas as pd
import pytest

import labs
from analysis.expectations import judge, load_expectations
from collect.inventory import Host
from collect.transports.local import LocalTransport
from formats.table import COLUMNS
from labs import bind_matrix
from testbed import system
from testbed.errors import LabError

GVISOR_FILES = ("gvisor.yaml", "gvisor_hijack.yaml", "gvisor_time_wait_owner.yaml", "gvisor_tuple_reuse.yaml")
# The host facts of the gVisor host: os_release is gVisor's own release, as `runsc --version` names it.
GVISOR_FACTS = {"os_family": "gvisor", "os_release": "20221219.0",
                "os_version": "4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016"}
LINUX_FACTS = {"os_family": "linux", "os_release": "6.18.44", "os_version": "#1 SMP"}
SANDBOX_TIMEOUT = 300


@pytest.fixture(scope="module")
def table():
    return load_expectations()


def test_every_gvisor_row_is_gvisors_and_cites_google_gvisor_at_its_release(table):
    rules = [rule for rule in table.rules if os.path.basename(rule.path) in GVISOR_FILES]
    assert {os.path.basename(rule.path) for rule in rules} == set(GVISOR_FILES)
    for rule in rules:
        assert rule.when["os_family"].values == {"gvisor"}, rule.where
        assert "gVisor" in rule.source and "release-20221219.0" in rule.source, rule.where
    # and no other file's row names gVisor (rows without os_family, such as the RFC's, apply to every system)
    others = [rule for rule in table.rules if os.path.basename(rule.path) not in GVISOR_FILES]
    assert not [rule.where for rule in others if rule.when.get("os_family") and
                rule.when["os_family"].matches("gvisor")]


def matrix_case(facts, **values):
    """One bind_matrix result row: TCP, inet, wildcard on both, the same user's prober, changed by `values`."""
    row = dict(run_id="r", host="h", lab="bind_matrix", outcome="ok", errno=None, witness="", detail="",
               proto="tcp", family="inet", state="LISTEN", first_opts="none", second_opts="none",
               first_addr="wildcard", second_addr="wildcard", prober="other_process", setsockopt="ok", bind="ok",
               listen="ok", **facts)
    row.update(values)
    row["case_id"] = labs.case_id(bind_matrix, row)
    return row


# Cells where netstack's sources decide otherwise than Linux's, or stay silent: (cell, what the gVisor rows
# expect, a phrase of their source; "" where no gVisor source covers the cell).
GVISOR_CELLS = [
    (dict(state="ESTABLISHED", second_opts="SO_REUSEPORT"), "bind=ok, listen=ok", "intersectionFlags"),
    (dict(state="TIME_WAIT", first_opts="SO_REUSEADDR", second_opts="SO_REUSEPORT"), "bind=ok, listen=ok",
     "intersectionFlags"),
    (dict(state="TIME_WAIT"), "bind=EADDRINUSE", "TCPPassiveCloseNoTimeWaitTest"),
    (dict(state="TIME_WAIT", first_opts="SO_REUSEADDR", second_opts="SO_REUSEADDR"), "bind=ok, listen=ok",
     "TCPPassiveCloseNoTimeWaitReuseTest"),
    (dict(state="FIN_WAIT_2"), "bind=EADDRINUSE", "TCPFinWait2Test"),
    (dict(state="LISTEN", first_opts="SO_REUSEADDR", second_opts="SO_REUSEADDR"), "bind=EADDRINUSE",
     "CheckRegisterTransportEndpoint"),
    (dict(state="LISTEN", first_opts="SO_REUSEPORT", second_opts="SO_REUSEPORT"), "bind=ok, listen=ok",
     "TcpPortReuseMultiThread"),
    (dict(proto="udp", state="BOUND", first_addr="loopback", second_addr="loopback", first_opts="SO_REUSEADDR",
          second_opts="SO_REUSEPORT", listen=None), "bind=EADDRINUSE", "BindReuseAddrThenReusePort"),
    (dict(proto="udp", family="dual", state="ESTABLISHED", second_addr="v4mapped", listen=None), "bind=EADDRINUSE",
     "we register both"),
    (dict(family="dual", state="BOUND", first_addr="v4mapped", second_addr="loopback"), "bind=ok, listen=ok",
     "V4MappedLoopbackOnlyReservesV4"),
    # sources that disagree (the port manager and demuxer against a test's comment), and another user: no row
    (dict(state="LISTEN", first_opts="SO_REUSEADDR", second_opts="SO_REUSEADDR", second_addr="loopback"), "", ""),
    (dict(state="LISTEN", first_opts="SO_REUSEPORT", second_opts="SO_REUSEPORT", prober="other_user"), "", ""),
]


@pytest.mark.parametrize("cell,expected,phrase", GVISOR_CELLS)
def test_the_gvisor_rows_say_what_netstacks_sources_say(table, cell, expected, phrase):
    judged = judge(pd.DataFrame([matrix_case(GVISOR_FACTS, **cell)]).reindex(columns=COLUMNS), table)
    row = judged.iloc[0]
    assert row["expected"] == expected
    assert phrase in row["source"]
    assert row["verdict"] == ("undocumented" if not expected else "match" if expected == "bind=ok, listen=ok"
                              else "mismatch")


@pytest.mark.parametrize("cell", [cell for cell, expected, _ in GVISOR_CELLS if expected])
def test_gvisor_and_linux_rows_judge_only_their_own_system(table, cell):
    frame = pd.DataFrame([matrix_case(GVISOR_FACTS, **cell), matrix_case(LINUX_FACTS, **cell)])
    gvisor, linux = judge(frame.reindex(columns=COLUMNS), table)["source"]
    assert "gVisor" in gvisor
    assert "gVisor" not in linux


# --- a real sandbox -------------------------------------------------------------------------------------------------

def gvisor_release(version_text):
    """gVisor's release from `runsc --version` ("runsc version 0.0~20221219.0" from Debian, "runsc version
    release-20221219.0" from gVisor's own builds)."""
    found = re.search(r"(\d{8}\.\d+)", version_text)
    assert found, "no gVisor release in " + repr(version_text)
    return found.group(1)


@pytest.fixture(scope="module")
def runsc():
    """Debian's runsc, installed if missing (root); the test is skipped, saying why, where no sandbox can run."""
    if os.geteuid() != 0:
        pytest.skip("`runsc do` runs a sandbox as root only")
    try:
        path = system.require_runsc()
    except LabError as exc:
        pytest.skip(str(exc))
    done = subprocess.run([path, "--network=none", "do", "/bin/true"], capture_output=True, text=True,
                          timeout=SANDBOX_TIMEOUT)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["exit status {}".format(done.returncode)])[-1]
        pytest.skip("runsc cannot run a sandbox here: " + last)
    return path


def test_the_test_beds_runsc_is_debians_and_names_its_release(runsc):
    done = subprocess.run([runsc, "--version"], capture_output=True, text=True, timeout=SANDBOX_TIMEOUT)
    assert runsc == system.RUNSC
    assert done.stdout.startswith("runsc version ")
    assert gvisor_release(done.stdout) == GVISOR_FACTS["os_release"]


# Selections whose every case a gVisor row covers and gVisor's table shows: (lab, --where arguments, cases).
SANDBOX_SELECTIONS = [
    ("bind_matrix", ["proto=tcp", "family=inet", "state=LISTEN,ESTABLISHED,CLOSE_WAIT", "first_addr=wildcard",
                     "second_addr=wildcard", "prober=other_process"], 48),
    ("hijack", ["proto=tcp", "family=inet", "first_addr=wildcard", "second_addr=wildcard", "prober=other_process"],
     16),
]


@pytest.mark.parametrize("lab,where,count", SANDBOX_SELECTIONS)
def test_a_sandboxs_cases_match_the_gvisor_rows(runsc, table, lab, where, count):
    """The agent in the sandbox through the local transport's launcher, as run-all starts it: its own facts (gVisor,
    the release runsc names) decide which rows judge it."""
    host = Host("gvisor", {"transport": "local", "launcher": [runsc, "--network=none", "do"]})
    with LocalTransport(host).run_agent({"labs": [lab], "where": where}) as lines:
        found = [json.loads(line) for line in lines]
    facts = found[0]
    assert {key: facts[key] for key in GVISOR_FACTS} == GVISOR_FACTS
    cases = [dict({key: value for key, value in record.items() if key != "record"}, run_id="r", host="gvisor",
                  **GVISOR_FACTS) for record in found if record["record"] == "case"
             and not record.get("second_family")]  # the rows are of the second socket in the first's family
    judged = judge(pd.DataFrame(cases).reindex(columns=COLUMNS), table)
    assert len(judged) == count
    differing = judged[judged["verdict"] != "match"][["case_id", "outcome", "witness", "verdict", "expected"]]
    assert differing.empty, differing.to_string()
    assert judged["source"].str.contains("gVisor").all()
