"""A lab host with another kernel: the Debian 12 VM of testbed/vm.py (Linux 6.1 under QEMU), measured over SSH by
run-all like any lab host, then powered off without a trace; and a boot that cannot finish in time fails in one
line with the console's last words, leaving no QEMU behind.

Slow (the first run builds the image, ~2 min; each boot takes ~25 s under TCG): skipped unless SOCKLAB_SLOW is set.
"""
import json
import os
import time

import pytest

from formats import hostlog
from tests.conftest import requires_root

pytestmark = [
    pytest.mark.skipif(not os.environ.get("SOCKLAB_SLOW"),
                       reason="slow: boots a VM (set SOCKLAB_SLOW=1 or run `./socklab test --slow`)"),
    # building the image takes debootstrap, which takes root
    requires_root,
]

NAME = "debian12-vm"
# a small selection: every case costs ~100x more under TCG than on this machine
WHERE = ["--where", "proto=tcp", "--where", "state=LISTEN", "--where", "family=inet"]


@pytest.fixture(scope="module")
def image():
    from testbed.vm import build_image
    return build_image()


def no_qemu_of(folder):
    from testbed.vm import Vm
    return not Vm(str(folder), {}).qemu_pids()


def test_the_image_is_built_once(image):
    from testbed.vm import build_image
    started = time.monotonic()
    assert build_image() == image
    assert time.monotonic() - started < 1
    for name in ("vmlinuz", "initrd.img", "ssh_host_ed25519_key.pub"):
        assert os.path.exists(os.path.join(os.path.dirname(image), name))


def test_run_all_measures_the_vm_over_ssh_then_down_leaves_nothing(image, invoke, tmp_path):
    from testbed.vm import VM_FILES, Vm
    folder = tmp_path / "vm"
    vm = Vm.up(str(folder), name=NAME)
    try:
        assert Vm.load(str(folder)).port == vm.port
        result = invoke("run-all", "--hosts", vm.inventory, "--out", str(tmp_path / "runs"), *WHERE, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        (run_dir,) = [path for path in (tmp_path / "runs").iterdir() if (path / "manifest.json").exists()]
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["hosts"][NAME]["status"] == "completed"
        log = hostlog.read(str(run_dir / (NAME + ".jsonl")))
        facts, cases = log.facts, log.cases
        assert facts["os_release"].startswith("6.1"), facts["os_release"]
        assert cases and all(case["outcome"] != "error" for case in cases)
    finally:
        vm.down()
    assert no_qemu_of(folder)
    assert not any(os.path.lexists(folder / name) for name in VM_FILES)
    # again is harmless
    vm.down()


def test_a_boot_that_does_not_finish_in_time_fails_in_one_line_and_kills_qemu(image, tmp_path):
    from testbed import LabError
    from testbed.vm import CONSOLE, Vm
    folder = tmp_path / "vm"
    # under TCG the kernel alone takes longer than this
    with pytest.raises(LabError) as raised:
        Vm.up(str(folder), name=NAME, timeout=5)
    message = str(raised.value)
    assert "\n" not in message
    assert "no SSH login" in message and "console:" in message
    assert no_qemu_of(folder)
    # what is left is the console's log, for whoever wants the whole boot
    assert sorted(os.listdir(str(folder))) == [CONSOLE]
