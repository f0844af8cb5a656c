"""The agent as one file to push: a zip application of labs/ (`python socklab-agent-<version>.pyz ...`).

Built in memory from the checkout's labs/*.py with fixed timestamps, so the same sources give the same bytes and
the same SHA-256 on every controller; its name carries the agent version, so a host keeps one file per version
and the controller pushes only what a host does not have yet.
"""
import functools
import hashlib
import io
import os
import zipfile

from collect.store import AGENT_SOURCES, agent_version

# Runs the agent's command line; `python agent.pyz ARGS` is `python -m labs ARGS`.
MAIN = b"from labs.__main__ import main\nmain()\n"
EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: no build time in the bytes


@functools.lru_cache(maxsize=None)
def build():
    """(file name, bytes, sha256) of the agent's zip application."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("__main__.py", EPOCH), MAIN)
        for name in sorted(os.listdir(AGENT_SOURCES)):
            if name.endswith(".py"):
                with open(os.path.join(AGENT_SOURCES, name), "rb") as stream:
                    archive.writestr(zipfile.ZipInfo("labs/" + name, EPOCH), stream.read())
    data = buffer.getvalue()
    return "socklab-agent-{}.pyz".format(agent_version()), data, hashlib.sha256(data).hexdigest()


def bootstrap_script():
    """The text of labs/bootstrap.py, which the controller feeds to a host's Python on stdin."""
    with open(os.path.join(AGENT_SOURCES, "bootstrap.py"), encoding="utf-8") as stream:
        return stream.read()
