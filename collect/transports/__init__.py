"""Transports: how the controller reaches a host and runs the agent there, one module per kind (as pyinfra's
connectors). Each has run_agent(arguments): a context manager that yields the agent's output line by line and
leaves nothing running on the host when it exits, however it exits; failures are collect.errors.TransportError."""
from collect.errors import TransportError
from collect.transports.local import LocalTransport


def for_host(host):
    if host.transport == "local":
        return LocalTransport(host)
    raise TransportError("transport {!r} is not available in this version of socklab".format(host.transport))
