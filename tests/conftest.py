"""Shared fixtures: the checkout, and invoke run as a user runs it (a subprocess in the checkout)."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def invoke():
    """invoke(*args) -> CompletedProcess of `invoke ARGS` run in the checkout, as the README's commands do."""
    def run(*args, timeout=600):
        return subprocess.run([sys.executable, "-m", "invoke"] + list(args), cwd=REPO, capture_output=True,
                              text=True, timeout=timeout)
    return run
