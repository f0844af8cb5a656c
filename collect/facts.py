"""`hosts`: reach every host of an inventory in parallel and show its facts (the agent's host record), or why it
could not be reached."""
from concurrent.futures import ThreadPoolExecutor

from rich.table import Table

from collect.errors import TransportError
from collect.transports import for_host
from formats import records


def host_facts(host, inventory, accept_new):
    """The host's facts record, or the one-line reason it could not be reached."""
    try:
        with for_host(host, inventory.hosts, accept_new).run_agent({"facts": True}) as lines:
            record = records.parse(next(iter(lines), ""))
    except TransportError as exc:
        return None, str(exc)
    except records.RecordError as exc:
        return None, "the agent's first line is not its host record: {}".format(exc)
    if record["record"] != records.HOST:
        return None, "the agent's first line is a {} record, not its host record".format(record["record"])
    return record, ""


def show_hosts(inventory, accept_new, parallel, console):
    """Print each host's facts (OS, release, Python, admin, witness) or its problem; returns the exit status, 1 if
    a host could not be reached."""
    chosen = inventory.select()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        answers = list(pool.map(lambda host: host_facts(host, inventory, accept_new), chosen))
    table = Table("host", "OS", "release", "Python", "admin", "witness", "problem")
    for host, (facts, problem) in zip(chosen, answers):
        if facts is None:
            table.add_row(host.name, "", "", "", "", "", problem)
        else:
            table.add_row(host.name, facts["os_family"], facts["os_release"], facts.get("python", ""),
                          "yes" if facts.get("admin") else "no", facts.get("witness", ""), "")
    console.print(table)
    return int(any(facts is None for facts, _ in answers))
