"""Run the agent on many hosts at once and hand every line to the results store as it arrives.

One host failing (unreachable, agent crash, garbage output, Ctrl-C) never stops the others: its status and reason
go to the manifest and whatever it sent before the fault stays in its <host>.jsonl.
"""
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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


class Display:
    """Per host: cases done of planned, and its state (rich progress; plain lines when not on a terminal)."""

    def __init__(self, hosts, console):
        self.progress = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[state]}"), TimeElapsedColumn(), console=console)
        self.tasks = {host.name: self.progress.add_task(host.name, total=None, state="waiting") for host in hosts}
        self.console = console

    def plan(self, host, cases):
        task = self.tasks[host]
        self.progress.update(task, total=(self.progress.tasks[task].total or 0) + cases)

    def advance(self, host):
        self.progress.advance(self.tasks[host])

    def state(self, host, text):
        self.progress.update(self.tasks[host], state=text)
        if not self.console.is_terminal:
            self.console.print("{}: {}".format(host, text), highlight=False)


def run_host(job, transport, store, display, stop):
    """Run the agent on one host to its end record; the manifest gets completed or failed and why."""
    name = job.host.name
    log = store.host_log(name)
    store.update_host(name, status=RUNNING, reason="", started=now())
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
                    display.plan(name, record["cases"])
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
    transports = [transport_for(job.host) for job in jobs]
    try:
        with display.progress, ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
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
