"""The local transport's `launcher` with real commands besides runsc (tests/test_gvisor.py has the sandbox): the agent
as another user (`sudo -u nobody`: it runs unprivileged, its facts say so) and in a network namespace of the test's
own (`ip netns exec NAME`), each measuring a few bind_matrix cases, as run-all starts it. Root only (sudo and ip
netns need it)."""
import json
import os
import shutil
import subprocess
import uuid

import pytest

from collect.inventory import Host
from collect.transports.local import LocalTransport
from testbed import system
from testbed.errors import LabError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sudo -u and ip netns need root")
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by any user, unlike a Python under /root
LISTEN_CASES = ["proto=tcp", "family=inet", "state=LISTEN", "first_opts=none", "second_opts=none",
                "first_addr=wildcard", "second_addr=wildcard"]


def measured(settings):
    """(facts, cases) of a bind_matrix selection run through the local transport with these host settings."""
    host = Host("launched", dict(settings, transport="local"))
    with LocalTransport(host).run_agent({"labs": ["bind_matrix"], "where": LISTEN_CASES}) as lines:
        records = [json.loads(line) for line in lines]
    return records[0], {record["prober"]: record for record in records if record["record"] == "case"}


@pytest.fixture
def sudo():
    """sudo, installed from Debian when missing (a plain machine lacks it); skipped, saying why, where it cannot be."""
    if not shutil.which("sudo"):
        try:
            system.apt_install(["sudo"])
        except LabError as exc:
            pytest.skip(str(exc))
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip("needs " + SYSTEM_PYTHON)


def test_sudo_runs_the_agent_as_another_user(sudo):
    facts, cases = measured({"launcher": "sudo -u nobody", "python": SYSTEM_PYTHON})
    assert (facts["launcher"], facts["admin"]) == ("sudo -u nobody", False)
    assert "implementation_version" not in facts  # only runsc is asked what it is
    assert {prober: (case["outcome"], case["witness"]) for prober, case in cases.items()} == {
        "same_process": ("EADDRINUSE", "LISTEN"), "other_process": ("EADDRINUSE", "LISTEN"),
        "other_user": ("unsupported", "")}
    assert cases["other_user"]["detail"] == "no other user: the agent does not run as root or administrator"


@pytest.fixture
def namespace():
    name = "socklab-test-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


@pytest.mark.skipif(not shutil.which("ip"), reason="needs ip (iproute2)")
def test_ip_netns_exec_runs_the_agent_in_that_namespace(namespace):
    facts, cases = measured({"launcher": ["ip", "netns", "exec", namespace]})
    assert (facts["launcher"], facts["os_family"], facts["admin"]) == ("ip netns exec " + namespace, "linux", True)
    assert {prober: (case["outcome"], case["witness"]) for prober, case in cases.items()} == {
        prober: ("EADDRINUSE", "LISTEN") for prober in ("same_process", "other_process", "other_user")}
