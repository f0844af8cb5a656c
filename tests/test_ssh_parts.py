"""Parts of the SSH transport that need no server: fingerprints and known_hosts lines as OpenSSH writes and reads
them (checked with the real ssh-keygen), keys from the environment, paths and commands for each host kind."""
import subprocess

import paramiko
import pytest

from collect import shells
from collect.errors import TransportError
from collect.transports import ssh


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "lab_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)], check=True)
    return path


def test_fingerprint_is_the_one_ssh_keygen_shows(key_file):
    shown = subprocess.run(["ssh-keygen", "-lf", str(key_file) + ".pub"], capture_output=True, text=True,
                           check=True).stdout.split()
    assert ssh.fingerprint(paramiko.Ed25519Key.from_private_key_file(str(key_file))) == "ssh-ed25519 " + shown[1]


def test_accept_new_records_a_line_openssh_finds(key_file, tmp_path):
    known_hosts = tmp_path / "ssh" / "known_hosts"
    key = paramiko.Ed25519Key.from_private_key_file(str(key_file))
    client = paramiko.SSHClient()
    ssh.AcceptNew(str(known_hosts)).missing_host_key(client, "[192.0.2.7]:2222", key)
    found = subprocess.run(["ssh-keygen", "-F", "[192.0.2.7]:2222", "-f", str(known_hosts)], capture_output=True,
                           text=True)
    assert found.returncode == 0 and key.get_base64() in found.stdout
    assert client.get_host_keys().lookup("[192.0.2.7]:2222")


def test_refuse_unknown_says_how_to_accept(key_file):
    key = paramiko.Ed25519Key.from_private_key_file(str(key_file))
    with pytest.raises(ssh.UnknownHostKey, match=r"unknown host key for h \(ssh-ed25519 SHA256:.*--accept-new"):
        ssh.RefuseUnknown("~/.ssh/known_hosts").missing_host_key(paramiko.SSHClient(), "h", key)


def test_key_from_environment_takes_key_text_or_a_path(key_file, monkeypatch):
    monkeypatch.setenv("LAB_KEY", key_file.read_text())
    assert isinstance(ssh.key_from_environment("LAB_KEY")["pkey"], paramiko.Ed25519Key)
    monkeypatch.setenv("LAB_KEY", str(key_file))
    assert ssh.key_from_environment("LAB_KEY") == {"key_filename": [str(key_file)]}
    monkeypatch.setenv("LAB_KEY", "-----BEGIN OPENSSH PRIVATE KEY-----\nnonsense\n")
    with pytest.raises(TransportError, match="holds no private key"):
        ssh.key_from_environment("LAB_KEY")
    monkeypatch.delenv("LAB_KEY")
    with pytest.raises(TransportError, match="LAB_KEY is not set"):
        ssh.key_from_environment("LAB_KEY")


@pytest.mark.parametrize("path, expected", [
    ("/home/lab/.socklab/a.pyz", "/home/lab/.socklab/a.pyz"),
    ("C:\\Users\\Jane Doe\\.socklab\\a.pyz", "/C:/Users/Jane Doe/.socklab/a.pyz"),
    ("/cygdrive/c/Users/lab/.socklab/a.pyz", "/cygdrive/c/Users/lab/.socklab/a.pyz"),
])
def test_sftp_paths(path, expected):
    assert ssh.sftp_path(path) == expected


@pytest.mark.parametrize("shell, text, words", [
    ("sh", "python3.11", ["python3.11"]),
    ("sh", "/opt/my python/bin/python3 -X utf8", ["/opt/my", "python/bin/python3", "-X", "utf8"]),
    ("sh", "'/opt/my python/bin/python3' -X utf8", ["/opt/my python/bin/python3", "-X", "utf8"]),
    ("cmd", "py -3", ["py", "-3"]),
    ("cmd", '"C:\\Program Files\\Python312\\python.exe"', ["C:\\Program Files\\Python312\\python.exe"]),
    ("powershell", "C:\\Python312\\python.exe -X utf8", ["C:\\Python312\\python.exe", "-X", "utf8"]),
])
def test_python_setting_is_split_as_that_shell_writes_commands(shell, text, words):
    assert ssh.command_words(text, shells.for_name(shell)) == words
