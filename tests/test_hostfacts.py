"""Host fact upstream_release: the upstream kernel version where a distribution's release hides it.

Recorded strings, and where they come from:
- Debian 12: uname -r "6.1.0-28-amd64", uname -v "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)" (Debian puts
  the package version and its changelog date in the build string; linux 6.1.119-1 is the bookworm-security upload of
  22 Nov 2024 in the changelog of Debian's linux-source-6.1).
- Ubuntu: /proc/version_signature "Ubuntu 5.4.0-12.15-generic 5.4.8", the example of ubuntu.com/kernel ("Identifying
  a kernel"), with uname -r "5.4.0-12-generic".
- This machine: uname -r "6.18.44-fc-v1147", uname -v "#1 SMP PREEMPT_DYNAMIC @0", and a /proc/version_signature of
  "#1 SMP PREEMPT_DYNAMIC @0 6.18.44-fc-v1147".
- FreeBSD 14.1: platform.release() "14.1-RELEASE"; Windows XP: release "XP" (seed 004's archived host record).
"""
import platform

from labs import hostfacts


def test_debian_takes_the_upstream_version_from_the_build_string():
    assert hostfacts.upstream_release("6.1.0-28-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)") == \
        "6.1.119"


def test_ubuntu_takes_the_last_field_of_its_version_signature():
    assert hostfacts.upstream_release("5.4.0-12-generic", "#15-Ubuntu SMP", "Ubuntu 5.4.0-12.15-generic 5.4.8\n") == \
        "5.4.8"


def test_elsewhere_the_leading_version_of_the_release():
    assert hostfacts.upstream_release("6.18.44-fc-v1147", "#1 SMP PREEMPT_DYNAMIC @0",
                                      "#1 SMP PREEMPT_DYNAMIC @0 6.18.44-fc-v1147\n") == "6.18.44"
    assert hostfacts.upstream_release("14.1-RELEASE", "FreeBSD 14.1-RELEASE releng/14.1") == "14.1"
    assert hostfacts.upstream_release("XP", "5.1.2600") == ""


def test_the_host_record_carries_it():
    facts = hostfacts.collect("test")
    assert facts["upstream_release"] == hostfacts.upstream_release(
        platform.release(), platform.version(), hostfacts.version_signature())
    assert facts["upstream_release"]
