"""Worker processes: a batching lab's batches spread over the host's cores, results given back in the plan's order.

Batch b goes to worker b % W; each worker is its own agent process with the lab's own Context (its own probers and
witness), runs its batches in order and writes one JSON line per batch (the batch's results). The agent reads every
worker's lines as they come and yields the results batch by batch in the plan's order, so the output is the same
as one process would give. A case's result does not depend on which process ran it: its sockets are on its own fresh
port whichever process made them (labs/bind_matrix.py).

Workers draw fresh ports from shares of their own (labs.endpoints.PortShare), so no two take the same port.
The first stdin line is {"lab": name, "host": host facts, "batches": [[params, ...], ...], "index": its number,
"workers": how many}. A worker exits when it
is done; if the agent goes away, labs.prober.kill_all() ends the workers (they are in its LIVE set) and their probers
end with them (their stdin closes).

    python -m labs.workers
"""
import json
import os
import queue
import subprocess
import sys
import threading

from labs import endpoints, module, prober
from labs.outcomes import failure, guarded_results, unexpected

# Each worker keeps about one core busy (the agent's part of a case, and its probers'): more than the host has only
# adds switching. This caps them on big hosts, where the batches of one lab are too few to share out further.
MAX_WORKERS = 8


def count(workers=None):
    """How many workers to run: `workers` if given, else one per core (at most MAX_WORKERS)."""
    return workers or min(os.cpu_count() or 1, MAX_WORKERS)


class Worker:
    """One worker process and a thread that collects its lines, so no worker waits on a full pipe."""

    def __init__(self, name, host, batches, index, workers):
        agent_home = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.pathsep.join(filter(None, [agent_home, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen([sys.executable, "-m", "labs.workers"], env=dict(os.environ, PYTHONPATH=path),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        prober.LIVE.add(self)
        self.lines = queue.Queue()
        self.exited = None  # why the process's results ended early, once they did
        request = {"lab": name, "host": host, "batches": batches, "index": index, "workers": workers}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.close()
        threading.Thread(target=self.collect, daemon=True).start()

    def collect(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def results(self, batch):
        """The results of this worker's next batch (`batch`, its cases); once the process has died, each of its
        cases is `error` (why: its exit status), so the run goes on with the other workers' batches."""
        line = self.lines.get() if self.exited is None else None
        if line is None:
            self.exited = self.exited or "a worker process exited with status {}".format(self.process.wait())
            return [failure(self.exited)] * len(batch)
        return json.loads(line)

    def close(self):
        prober.LIVE.discard(self)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()


def run(name, host, batches, workers):
    """[(params, result)] of each of `batches` (lists of a lab's cases), in order, from `workers` processes."""
    started = [Worker(name, host, batches[number::workers], number, workers) for number in range(workers)]
    try:
        for number, batch in enumerate(batches):
            yield list(zip(batch, started[number % workers].results(batch)))
    finally:
        for worker in started:
            worker.close()


def serve(stdin, stdout):
    request = json.loads(stdin.readline())
    endpoints.set_port_share(request["index"], request["workers"], endpoints.ephemeral_range(request["host"]))
    lab = module(request["lab"])
    try:
        context = lab.Context(request["host"])
    except Exception as exc:  # the lab cannot start in this process: each of its cases says why
        failed = failure("the lab could not start: " + unexpected(exc))
        context = None
    try:
        for batch in request["batches"]:
            results = guarded_results(lab, context, batch) if context else [failed] * len(batch)
            stdout.write(json.dumps(results).encode() + b"\n")
            stdout.flush()
    finally:
        if context:
            context.close()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
