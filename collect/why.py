"""`why` on a host: its agent asked through the host's transport, as a lab run reaches it (local, SSH), with a
{"why": question} request (labs/why.py); the records it answers with, checked (formats.records)."""
from collect.errors import TransportError
from collect.transports import for_host
from formats import records
from formats.errors import UserError


def one_host(inventory, name):
    """The inventory host `name`; UserError for a group or a name the inventory lacks."""
    if name in inventory.groups and name not in inventory.hosts:
        raise UserError("{!r} is a group: why asks one host".format(name), path=inventory.path, field="--host")
    (host,) = inventory.select([name])
    return host


def ask(inventory, name, question, accept_new=False):
    """{"facts", "port", "holders", "answers"}: what the agent on host `name` says of the question; TransportError
    when the host cannot be asked or answers what is not an agent's answer."""
    host = one_host(inventory, name)
    asked = {"facts": None, "port": None, "holders": [], "answers": []}
    ended = False
    with for_host(host, inventory.hosts, accept_new).run_agent({"labs": [], "why": question}) as lines:
        for number, line in enumerate(lines, 1):
            try:
                record = records.parse(line)
            except records.RecordError as exc:
                raise TransportError("agent output line {} is not a socklab record: {}".format(number, exc)) \
                    from None
            kind = record.pop("record")
            if kind == records.HOST:
                asked["facts"] = record
            elif kind == records.PORT:
                asked["port"] = record
            elif kind in (records.HOLDER, records.ANSWER):
                asked[kind + "s"].append(record)
            elif kind == records.END:
                ended = True
    if not ended or asked["facts"] is None or asked["port"] is None:
        raise TransportError("the agent's answer ended before it was whole")
    return asked
