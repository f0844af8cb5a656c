"""Run the agent on many hosts at once and hand every line to the results store as it arrives.

One host failing (unreachable, agent crash, garbage output, Ctrl-C) never stops the others: its status and reason
go to the manifest and whatever it sent before the fault stays in its <host>.jsonl.
"""
import json
import threading
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from collect import store as results_store
from collect import transports
from collect.errors import TransportError


def agent_arguments(labs, where):
    return [word for lab in labs for word in ("--lab", lab)] + [word for w in where for word in ("--where", w)]


def host_labs(host, labs):
    """The labs asked for, less those the host's `labs:` setting leaves out."""
    allowed = host.settings.get("labs")
    return [lab for lab in labs if allowed is None or lab in allowed]


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


def run_host(host, labs, where, store, display, stop):
    """Run the agent on one host to its end record; the manifest gets completed or failed and why."""
    log = store.host_log(host.name)
    store.update_host(host.name, status=results_store.RUNNING, started=results_store.now())
    display.state(host.name, "running")
    cases, ended = 0, False
    try:
        with transports.for_host(host).run_agent(agent_arguments(host_labs(host, labs), where)) as lines:
            for number, line in enumerate(lines, 1):
                if stop.is_set():
                    raise TransportError("interrupted")
                try:
                    record = json.loads(line)
                    kind = record["record"]
                except (ValueError, TypeError, KeyError):
                    raise TransportError("agent output line {} is not a socklab record: {!r}".format(
                        number, line[:80])) from None
                log.write(line)
                if kind == "plan":
                    display.plan(host.name, record["cases"])
                elif kind == "case":
                    cases += 1
                    display.advance(host.name)
                elif kind == "end":
                    ended = True
        if not ended:
            raise TransportError("agent output ended before its end record")
        store.update_host(host.name, status=results_store.COMPLETED, cases=cases, ended=results_store.now())
        display.state(host.name, "completed")
    except TransportError as exc:
        store.update_host(host.name, status=results_store.FAILED, reason=str(exc), cases=cases,
                          ended=results_store.now())
        display.state(host.name, "failed: " + str(exc))
    finally:
        log.close()


def run_hosts(hosts, labs, where, store, parallel=8, console=None):
    """Every host at once, at most `parallel` at a time; returns when all have ended. Ctrl-C ends them all."""
    console = console or Console(stderr=True)
    display, stop = Display(hosts, console), threading.Event()
    try:
        with display.progress, ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = [pool.submit(run_host, host, labs, where, store, display, stop) for host in hosts]
            try:
                for future in futures:
                    future.result()
            except KeyboardInterrupt:
                stop.set()
                raise
    finally:
        store.finish()  # what arrived before an interrupt is a result too
