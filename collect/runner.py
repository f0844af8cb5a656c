"""Run the agent on many hosts at once and hand every line to the results store as it arrives.

One host failing (unreachable, agent crash, garbage output, Ctrl-C) never stops the others: its status and reason
go to the manifest and whatever it sent before the fault stays in its <host>.jsonl.
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from collect.errors import TransportError
from formats import records
from formats.manifest import COMPLETED, FAILED, RUNNING, now
from formats.records import HOST_COLUMNS
from labs import LABS


@dataclass
class Job:
    """One host's part of a run: the request for its agent (labs/session.py) and, when a run is resumed, the
    facts the host had then (it must still be the same system) and how many cases it already gave."""
    host: object
    request: dict
    facts: dict = None
    cases: int = 0


def host_labs(host, labs):
    """The labs asked for, less those the host's `labs:` setting leaves out."""
    allowed = host.settings.get("labs")
    return [lab for lab in labs if allowed is None or lab in allowed]


def new_job(host, labs, where):
    return Job(host, {"labs": host_labs(host, labs), "where": list(where)})


def resumed_job(host, store):
    """The host's part of a resumed run: only the cases its log does not hold yet."""
    facts, done = store.received(host.name)
    manifest = store.manifest
    request = {"labs": host_labs(host, manifest.get("labs") or LABS), "where": manifest.get("where", []),
               "skip": done}
    return Job(host, request, facts or None, sum(len(ids) for ids in done.values()))


def check_same_host(job, facts):
    changed = [column for column in HOST_COLUMNS if job.facts and job.facts.get(column) != facts.get(column)]
    if changed:
        raise TransportError("the host changed since this run ({}: {!r} then, {!r} now): start a new run".format(
            changed[0], job.facts.get(changed[0]), facts.get(changed[0])))


class Elapsed(ProgressColumn):
    """The time since a host started (its task's `started` field): the bar's own clock restarts with each lab."""

    def render(self, task):
        started = task.fields.get("started")
        seconds = int(time.monotonic() - started) if started else 0
        return Text("{}:{:02d}:{:02d}".format(seconds // 3600, seconds // 60 % 60, seconds % 60),
                    style="progress.elapsed")


class Display:
    """Per host, from the start: what it is doing (connecting, the lab it runs: 'hijack (lab 2 of 7)', completed,
    failed and why), that lab's cases done of planned with its time left, and the time since the host started
    (rich progress, one line per host within 80 columns; plain lines when not on a terminal). The bar and the
    time left are the lab's: its plan record gives its cases, so a lab of few slow cases (socketpair_churn) gets
    its own estimate instead of hiding in the others' count."""

    def __init__(self, hosts, console):
        width = max([len(host.name) for host in hosts] + [4])
        self.progress = Progress(
            TextColumn("{{task.description:<{}}}".format(width)), TextColumn("{task.fields[doing]:<29}"),
            BarColumn(bar_width=None), MofNCompleteColumn(), TimeRemainingColumn(), Elapsed(), console=console,
            expand=True)
        self.tasks = {host.name: self.progress.add_task(host.name, total=None, doing="waiting", lab="", labs=0,
                                                        number=0, started=None, done=0) for host in hosts}
        self.console = console

    def start(self, host, labs):
        """The host begins: `labs` labs to run."""
        self.progress.update(self.tasks[host], labs=labs, started=time.monotonic())

    def plan(self, host, cases, lab=""):
        """The host's agent starts a lab of `cases` cases."""
        task = self.tasks[host]
        fields = self.progress.tasks[task].fields
        number = fields["number"] + 1
        doing = "{} (lab {} of {})".format(lab, number, max(fields["labs"], number)) if lab else "running"
        self.progress.reset(task, total=cases, completed=0, **dict(fields, lab=doing, doing=doing, number=number))
        if not self.console.is_terminal:
            self.console.print("{}: {}: {:,} cases".format(host, doing, cases), highlight=False)

    def advance(self, host):
        task = self.tasks[host]
        self.progress.update(task, advance=1, done=self.progress.tasks[task].fields["done"] + 1)

    def state(self, host, text):
        """What the host is doing when it is not running a lab: connecting, completed, failed: why. Once it has
        ended, its bar counts every case it gave."""
        task = self.tasks[host]
        fields = self.progress.tasks[task].fields
        if text == "running" and fields["lab"]:
            self.progress.update(task, doing=fields["lab"])
        elif text in ("connecting", "running"):
            self.progress.update(task, doing=text)
        else:
            self.progress.update(task, doing=text, total=fields["done"], completed=fields["done"])
        if not self.console.is_terminal:
            self.console.print("{}: {}".format(host, text), highlight=False)


def run_host(job, transport, store, display, stop):
    """Run the agent on one host to its end record; the manifest gets completed or failed and why."""
    name = job.host.name
    log = store.host_log(name)
    store.update_host(name, status=RUNNING, reason="", started=now())
    display.start(name, len(job.request.get("labs") or ()))
    display.state(name, "connecting")
    cases, ended = job.cases, False
    try:
        with transport.run_agent(job.request) as lines:
            display.state(name, "running")
            for number, line in enumerate(lines, 1):
                if stop.is_set():
                    raise TransportError("interrupted")
                try:
                    record = records.parse(line)
                except records.RecordError as exc:
                    if not line.endswith("\n"):  # the last line, cut short: the stream broke inside it
                        raise TransportError("agent output was cut short in line {}".format(number)) from None
                    raise TransportError("agent output line {} is not a socklab record: {} ({!r})".format(
                        number, exc, line[:60])) from None
                kind = record["record"]
                if kind == records.HOST:
                    check_same_host(job, record)
                log.write(line)
                if kind == records.PLAN:
                    display.plan(name, record["cases"], record["lab"])
                elif kind == records.CASE:
                    cases += 1
                    store.case_arrived(name, cases)
                    display.advance(name)
                elif kind == records.END:
                    ended = True
        if not ended:
            raise TransportError("agent output ended before its end record")
        store.update_host(name, status=COMPLETED, cases=cases, ended=now())
        display.state(name, "completed")
    except Exception as exc:  # a host's fault, or a bug met on one host: either way the other hosts go on
        if stop.is_set():
            reason = "interrupted"
        elif isinstance(exc, TransportError):
            reason = str(exc)
        else:
            reason = "unexpected {}: {}".format(type(exc).__name__, exc)
            display.console.print_exception()
        store.update_host(name, status=FAILED, reason=reason, cases=cases, ended=now())
        display.state(name, "failed: " + reason)
    finally:
        log.close()


def run_hosts(jobs, store, transport_for, parallel=8, console=None):
    """Every job at once, at most `parallel` at a time; returns when all have ended. Ctrl-C ends them all.
    `transport_for(host)` gives each host's transport."""
    console = console or Console(stderr=True)
    display, stop = Display([job.host for job in jobs], console), threading.Event()
    try:
        # the display first: making a transport may load a library for seconds (Fabric for SSH)
        with display.progress, ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            transports = [transport_for(job.host) for job in jobs]
            futures = [pool.submit(run_host, job, transport, store, display, stop)
                       for job, transport in zip(jobs, transports)]
            try:
                for future in futures:
                    future.result()
            except KeyboardInterrupt:
                stop.set()
                pool.shutdown(wait=False, cancel_futures=True)  # hosts not started stay pending, for --resume
                for transport in transports:
                    transport.cancel()
                raise
    finally:
        store.finish()  # what arrived before an interrupt is a result too
