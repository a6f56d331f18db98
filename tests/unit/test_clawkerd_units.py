"""clawkerd's pure parts, in process: configuration, users, exit codes, TTY lines, JSON log."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import clawkerd
from clawkerd.bootstrap import BootError, read_bootstrap, settings_from_env
from clawkerd.exit_status import exit_code_from_wait_status
from clawkerd.identity import (
    UnknownUserError,
    lookup_uid,
    resolve_user,
    supplementary_groups,
    user_environment,
    working_directory_for,
)
from clawkerd.logging_setup import configure_logging
from clawkerd.steps_tty import StepLineRenderer
from clawkerd.supervisor import container_environment

PASSWD = """\
root:x:0:0:root:/root:/bin/bash
# a comment
+nisuser::::::
claude:x:1001:1001:Claude:/home/claude:/bin/bash
broken:x:notanumber:1:::
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
GROUP = """\
root:x:0:
claude:x:1001:
sudo:x:27:claude,other
docker:x:999:other,claude
empty:x:500:
"""


@pytest.fixture
def etc(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "passwd").write_text(PASSWD)
    (tmp_path / "group").write_text(GROUP)
    return tmp_path / "passwd", tmp_path / "group"


# -- configuration ---------------------------------------------------------------------------


def test_settings_defaults_follow_the_design() -> None:
    settings = settings_from_env({"CLAWKER_AGENT": "dev"}, ["claude"])
    assert settings.user == "claude"
    assert settings.bootstrap_dir == Path("/run/clawker/bootstrap")
    assert settings.listen == "0.0.0.0:7700"
    assert settings.log_path == Path("/var/log/clawker/clawkerd.log")
    assert settings.log_max_bytes == 50 * 1024 * 1024
    assert settings.initialized_marker == Path("/var/lib/clawker/initialized")
    assert settings.command == ("claude",)
    assert settings.workspace is None


def test_the_user_command_is_everything_after_a_leading_double_dash() -> None:
    env = {"CLAWKER_AGENT": "dev"}
    assert settings_from_env(env, ["--", "sh", "-c", "x"]).command == ("sh", "-c", "x")
    assert settings_from_env(env, ["sh", "--", "x"]).command == ("sh", "--", "x")


@pytest.mark.parametrize(
    ("environ", "args", "message"),
    [
        ({}, ["claude"], "CLAWKER_AGENT is not set"),
        ({"CLAWKER_AGENT": "dev"}, [], "no user command"),
        ({"CLAWKER_AGENT": "dev"}, ["--"], "no user command"),
        ({"CLAWKER_AGENT": "dev", "CLAWKERD_LOG_MAX_BYTES": "lots"}, ["x"], "not a number"),
        ({"CLAWKER_AGENT": "dev", "CLAWKERD_LOG_MAX_BYTES": "0"}, ["x"], "must be positive"),
    ],
)
def test_bad_settings_are_boot_errors(
    environ: dict[str, str], args: list[str], message: str
) -> None:
    with pytest.raises(BootError, match=message):
        settings_from_env(environ, args)


def test_bootstrap_material_is_read_and_bad_files_refused(tmp_path: Path) -> None:
    cert = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    key = b"-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n"
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "ca.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    (tmp_path / "register.jwt").write_text("a.b.c\n")
    material = read_bootstrap(tmp_path)
    assert (material.cert_pem, material.key_pem) == (cert, key)
    assert material.register_jwt == "a.b.c"
    (tmp_path / "ca.pem").write_bytes(b"garbage")
    with pytest.raises(BootError, match=r"ca\.pem is not PEM"):
        read_bootstrap(tmp_path)
    (tmp_path / "key.pem").write_bytes(b"")
    with pytest.raises(BootError, match=r"empty: key\.pem"):
        read_bootstrap(tmp_path)


# -- users -----------------------------------------------------------------------------------


def test_a_user_resolves_with_its_groups(etc: tuple[Path, Path]) -> None:
    claude = resolve_user("claude", *etc)
    assert (claude.uid, claude.gid, claude.home) == (1001, 1001, "/home/claude")
    assert claude.member_of == (27, 999)
    assert supplementary_groups(claude, claude.gid) == (1001, 27, 999)
    assert resolve_user("1001", *etc) == claude
    assert lookup_uid(65534, *etc) is not None
    assert lookup_uid(4242, *etc) is None
    assert supplementary_groups(None, 4242) == (4242,)


def test_an_unknown_user_names_the_file(etc: tuple[Path, Path]) -> None:
    with pytest.raises(UnknownUserError, match=r"'ghost' not found in .*passwd"):
        resolve_user("ghost", *etc)
    with pytest.raises(UnknownUserError):
        resolve_user("nisuser", *etc)


def test_the_environment_describes_the_user_it_runs_as(etc: tuple[Path, Path]) -> None:
    base = {"HOME": "/root", "USER": "root", "LOGNAME": "root", "PATH": "/bin"}
    claude = resolve_user("claude", *etc)
    assert user_environment(base, claude) == {
        "HOME": "/home/claude",
        "USER": "claude",
        "LOGNAME": "claude",
        "PATH": "/bin",
    }
    assert user_environment(base, None, 4242) == {"HOME": "/", "USER": "4242", "PATH": "/bin"}


def test_the_working_directory_falls_back_to_root_without_a_home(
    etc: tuple[Path, Path], tmp_path: Path
) -> None:
    nobody = resolve_user("nobody", *etc)
    assert working_directory_for(nobody) == "/"
    assert working_directory_for(nobody, str(tmp_path)) == str(tmp_path)
    assert working_directory_for(None) == "/"


def test_clawkerds_own_variables_do_not_reach_the_cmd() -> None:
    env = container_environment({"CLAWKERD_LOG": "x", "CLAWKER_AGENT": "dev", "PATH": "/bin"})
    assert env == {"CLAWKER_AGENT": "dev", "PATH": "/bin"}


# -- exit codes ------------------------------------------------------------------------------


def test_a_wait_status_maps_to_a_shell_style_exit_code() -> None:
    # Linux wait-status encoding: exit code in the second byte, terminating signal in the first.
    assert exit_code_from_wait_status(0) == 0
    assert exit_code_from_wait_status(9 << 8) == 9
    assert exit_code_from_wait_status(255 << 8) == 255
    assert exit_code_from_wait_status(int(signal.SIGKILL)) == 128 + 9
    assert exit_code_from_wait_status(int(signal.SIGTERM)) == 128 + 15


# -- TTY lines -------------------------------------------------------------------------------


def test_step_lines_are_written_only_when_enabled(tmp_path: Path) -> None:
    path = tmp_path / "screen"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        assert StepLineRenderer(fd).enabled is False
        StepLineRenderer(fd).step_finished("hidden", True)
        renderer = StepLineRenderer(fd, enabled=True)
        renderer.step_finished("seed config", True)
        renderer.step_finished("post_init", False, "exit 3")
    finally:
        os.close(fd)
    assert path.read_text(encoding="utf-8") == "✓ seed config\n✗ post_init (exit 3)\n"


# -- log -------------------------------------------------------------------------------------


def test_the_log_is_json_lines_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "log" / "clawkerd.log"
    log = configure_logging(path, max_bytes=300)
    try:
        for n in range(30):
            log.info("tick", n=n, note="x" * 20)
        lines = path.read_text().splitlines()
        record = json.loads(lines[-1])
        assert record["event"] == "tick"
        assert record["n"] == 29
        assert record["level"] == "info"
        assert sorted(p.name for p in path.parent.iterdir()) == [
            "clawkerd.log",
            "clawkerd.log.1",
            "clawkerd.log.2",
            "clawkerd.log.3",
        ]
        assert path.stat().st_mode & 0o007 == 0
    finally:
        for handler in logging.getLogger("clawkerd").handlers:
            handler.close()


# -- start-up --------------------------------------------------------------------------------


def test_clawkerd_version_is_pyprojects_and_costs_no_metadata_scan() -> None:
    """The CP's dial waits for clawkerd's imports: importlib.metadata is not one of them."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    assert clawkerd.__version__ == tomllib.loads(pyproject.read_text())["project"]["version"]
    probe = (
        "import sys, clawkerd.__main__, clawkerd.server; print('importlib.metadata' in sys.modules)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "False"


def test_clawkerd_as_a_program_imports_without_ssl_and_with_the_collector_back_on() -> None:
    """`python -m clawkerd` skips the stdlib's OpenSSL binding and imports with gc off; once
    booted (here: refused for want of CLAWKER_AGENT) the collector runs again."""
    seen = _after_clawkerd_as_a_program(
        "import gc\n"
        "print(sys.modules.get('ssl', 'absent'), 'asyncio' in sys.modules, gc.isenabled(), code)"
    )
    assert seen == ["None", "True", "True", "2"]


def test_importing_clawkerds_main_module_changes_nothing_in_the_importer() -> None:
    probe = "import gc, sys, clawkerd.__main__, ssl; print(ssl.__name__, gc.isenabled())"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["ssl", "True"]


def test_clawkerd_as_a_program_defers_protobufs_python_messages_and_still_speaks_protobuf() -> None:
    """`python -m clawkerd` binds protobuf's pure-Python message module without running it
    (nor `text_format`, which only it imports); messages still build, encode and decode, and
    the module runs in full the moment something reads from it."""
    seen = _after_clawkerd_as_a_program(
        "from proto.gen import clawkerd_pb2 as pb\n"
        "lazy = sys.modules['google.protobuf.internal.python_message']\n"
        "print(type(lazy).__name__, 'google.protobuf.text_format' in sys.modules)\n"
        "wire = pb.Command(hello=pb.Hello(cp_version='v')).SerializeToString()\n"
        "print(pb.Command.FromString(wire).hello.cp_version)\n"
        "print(callable(lazy._AttachFieldHelpers), type(lazy).__name__)\n"
    )
    assert seen == ["_LazyModule", "False", "v", "True", "module"]


def _after_clawkerd_as_a_program(then: str) -> list[str]:
    """Run `python -m clawkerd true` in a fresh interpreter (its boot refused for want of
    CLAWKER_AGENT, after the imports), then `then` there, with `sys` imported and `code` the
    exit status; return what `then` printed, split into words."""
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['clawkerd', 'true']\n"
        "try:\n"
        "    runpy.run_module('clawkerd', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
    ) + then
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWKER")}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.split()
