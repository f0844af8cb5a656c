"""Real test beds on this machine: lab hosts, each an OpenSSH sshd (in its own network namespace, or on loopback)
with its own lab user, reached with one client key and one known_hosts file and described by an inventory
(hosts.yaml) the controller reads. Lab.up() brings one up, Lab.load() finds it again, down() removes it."""
from testbed.errors import LabError
from testbed.lab import Lab, LabHost, down

__all__ = ["Lab", "LabError", "LabHost", "down"]
