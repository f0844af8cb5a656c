"""Transports: how the controller reaches a host and runs the agent there, one module per kind (as pyinfra's
connectors). Each has run_agent(request): a context manager that starts the agent with `--serve`, sends it the
request (labs/session.py), yields its output line by line and leaves nothing running on the host when it exits,
however it exits; failures are collect.errors.TransportError.
"""
from collect.transports.local import LocalTransport


def for_host(host, inventory_hosts=None, accept_new=False):
    """The transport for an inventory host; `inventory_hosts` resolves jump hosts named in the inventory, and
    `accept_new` records unknown SSH host keys instead of refusing them."""
    if host.transport == "local":
        return LocalTransport(host)
    from collect.transports.ssh import SshTransport  # Fabric and paramiko load only when a host needs them
    return SshTransport(host, inventory_hosts, accept_new)
