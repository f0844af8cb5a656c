"""SSH key pairs for the test beds, made by OpenSSH's ssh-keygen."""
import os
import subprocess

from testbed.errors import LabError


def keypair(path, comment):
    """Write an ed25519 key pair, without passphrase, at path and path.pub; return the public key line."""
    for stale in (path, path + ".pub"):
        # ssh-keygen asks before overwriting, and nobody would answer
        if os.path.exists(stale):
            os.remove(stale)
    result = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise LabError(f"ssh-keygen could not write {path}: {result.stderr.strip() or result.returncode}")
    with open(path + ".pub") as public:
        return public.read().strip()
