"""Invalid specs: every problem is reported with its file:line:column, key path and a fix."""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest

from specs import SourceRef, SpecError, SpecErrors, load_specs

PROJECT = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: myapp}
"""

AGENT = "apiVersion: clawker.dev/v1alpha1\nkind: Agent\n"

# Agent documents in the table follow PROJECT and a '---' line, so they begin on line 5.
AGENT_HEAD = PROJECT + "---\n" + AGENT


@dataclass(frozen=True)
class Bad:
    """Spec files (name -> text), the one error expected, and where it must point."""

    files: dict[str, str]
    location: str
    message: str


def agent_spec(spec: str) -> dict[str, str]:
    """A valid project and an agent `dev` (metadata on line 7, spec on line 8) with `spec`."""
    return {"a.yaml": AGENT_HEAD + "metadata: {name: dev}\nspec:\n" + spec}


BAD_INPUTS: dict[str, Bad] = {
    "yaml syntax error": Bad(
        {"a.yaml": "apiVersion: clawker.dev/v1alpha1\nkind: Project\nmetadata: {name: myapp\n"},
        "a.yaml:4:1",
        "invalid YAML: expected ',' or '}'",
    ),
    "yaml duplicate key": Bad(
        {"a.yaml": PROJECT + "kind: Agent\n"},
        "a.yaml:4:1",
        "duplicate key 'kind'",
    ),
    "a yaml syntax error wins over a duplicate key in an earlier document": Bad(
        {"a.yaml": PROJECT + "kind: Agent\n---\nmetadata: {name: dev\n"},
        "a.yaml:7:1",
        "invalid YAML: expected ',' or '}'",
    ),
    "tab indentation": Bad(
        {"a.yaml": PROJECT + "spec:\n\tbuild: {}\n"},
        "a.yaml:5:1",
        "indent with spaces, not tabs",
    ),
    "unknown top-level key": Bad(
        {"a.yaml": PROJECT + "sepc: {}\n"},
        "a.yaml:4:1",
        "sepc: unknown key 'sepc' (did you mean 'spec'?)",
    ),
    "unknown key in spec": Bad(
        agent_spec("  workspace: {mdoe: bind}\n"),
        "a.yaml:9:15",
        "spec.workspace.mdoe: unknown key 'mdoe' (did you mean 'mode'?)",
    ),
    "unknown key nested in security.firewall": Bad(
        agent_spec("  security:\n    firewall:\n      add_domain: [github.com]\n"),
        "a.yaml:11:7",
        "spec.security.firewall.add_domain: unknown key 'add_domain' (did you mean 'add_domains'?)",
    ),
    "unknown key without a close match lists the known ones": Bad(
        agent_spec("  build: {zzz: 1}\n"),
        "a.yaml:9:11",
        "unknown key 'zzz' (known keys: base_image, packages, harness)",
    ),
    "camelCase key": Bad(
        agent_spec("  build: {baseImage: debian}\n"),
        "a.yaml:9:11",
        "unknown key 'baseImage' (did you mean 'base_image'?)",
    ),
    "packages as a string": Bad(
        agent_spec("  build: {packages: ripgrep}\n"),
        "a.yaml:9:21",
        "spec.build.packages: expected a list, got a string ('ripgrep') (write a list: [ripgrep])",
    ),
    "a mapping where a string belongs": Bad(
        agent_spec("  build:\n    base_image: {name: debian}\n"),
        "a.yaml:10:17",
        "spec.build.base_image: expected a string, got a mapping",
    ),
    "a quoted boolean": Bad(
        agent_spec('  agent: {enable_shared_dir: "yes"}\n'),
        "a.yaml:9:30",
        "expected true or false, got a string ('yes') (write true or false, without quotes)",
    ),
    "command as a string": Bad(
        agent_spec('  command: "claude --model opus"\n'),
        "a.yaml:9:12",
        "spec.command: expected a list of arguments, got a string"
        " (write it as a list: [claude, --model, opus])",
    ),
    "empty command": Bad(
        agent_spec("  command: []\n"),
        "a.yaml:9:12",
        "spec.command: command must not be empty",
    ),
    "command item that is a list": Bad(
        agent_spec("  command: [bash, [x]]\n"),
        "a.yaml:9:19",
        "spec.command[1]: expected a string, got a list",
    ),
    "missing metadata.name": Bad(
        {"a.yaml": PROJECT + "---\napiVersion: clawker.dev/v1alpha1\nkind: Agent\nmetadata: {}\n"},
        "a.yaml:7:1",
        "metadata.name: missing required key 'name' (add name: <name> under metadata)",
    ),
    "missing metadata": Bad(
        {"a.yaml": "apiVersion: clawker.dev/v1alpha1\nkind: Project\n"},
        "a.yaml:1:1",
        "metadata: missing required key 'metadata' (add metadata: {name: <name>})",
    ),
    "duplicate agent": Bad(
        {
            "a.yaml": AGENT_HEAD + "metadata: {name: dev}\n",
            "b.yaml": AGENT + "metadata:\n  name: dev\n",
        },
        "b.yaml:4:9",
        "agent 'myapp/dev' is declared twice; first at a.yaml:6:1",
    ),
    "duplicate project": Bad(
        {"a.yaml": PROJECT + "---\n" + PROJECT},
        "a.yaml:7:18",
        "project 'myapp' is declared twice; first at a.yaml:3:18",
    ),
    "uppercase name": Bad(
        {"a.yaml": AGENT_HEAD + "metadata: {name: Dev}\n"},
        "a.yaml:7:18",
        "metadata.name: invalid agent name 'Dev': Docker names must be lowercase (use 'dev')",
    ),
    "name with a dot": Bad(
        {"a.yaml": AGENT_HEAD + "metadata: {name: dev.1}\n"},
        "a.yaml:7:18",
        "dots separate the parts of Docker names (use '-' instead, e.g. 'dev-1')",
    ),
    "name too long": Bad(
        {"a.yaml": AGENT_HEAD + "metadata: {name: " + "a" * 64 + "}\n"},
        "a.yaml:7:18",
        "is 64 characters long (use 1-63 lowercase letters",
    ),
    "name with other characters": Bad(
        {"a.yaml": AGENT_HEAD + "metadata: {name: -dev}\n"},
        "a.yaml:7:18",
        "invalid agent name '-dev' (use 1-63 lowercase letters, digits, '-' or '_', starting",
    ),
    "project name that is no image name": Bad(
        {"a.yaml": PROJECT.replace("myapp", "my_-app")},
        "a.yaml:3:18",
        "project name 'my_-app' cannot be part of the image name clawker-my_-app",
    ),
    "empty file": Bad({"a.yaml": ""}, "a.yaml:1:1", "no documents in file"),
    "file with only empty documents": Bad(
        {"a.yaml": "---\n# nothing here\n---\n"}, "a.yaml:1:1", "no documents in file"
    ),
    "unknown kind": Bad(
        {"a.yaml": "apiVersion: clawker.dev/v1alpha1\nkind: Agnet\nmetadata: {name: x}\n"},
        "a.yaml:2:7",
        "kind: unknown kind 'Agnet'; supported kinds: Agent, Project (did you mean 'Agent'?)",
    ),
    "missing kind": Bad(
        {"a.yaml": "apiVersion: clawker.dev/v1alpha1\nmetadata: {name: x}\n"},
        "a.yaml:1:1",
        "kind: missing kind",
    ),
    "unsupported apiVersion": Bad(
        {"a.yaml": PROJECT.replace("v1alpha1", "v1")},
        "a.yaml:1:13",
        "unsupported apiVersion 'clawker.dev/v1' (use apiVersion: clawker.dev/v1alpha1)",
    ),
    "missing apiVersion": Bad(
        {"a.yaml": "kind: Project\nmetadata: {name: myapp}\n"},
        "a.yaml:1:1",
        "apiVersion: missing apiVersion (add apiVersion: clawker.dev/v1alpha1)",
    ),
    "agent naming an undeclared project": Bad(
        {"a.yaml": AGENT_HEAD + "metadata: {name: dev, project: other}\n"},
        "a.yaml:7:32",
        "metadata.project: project 'other' is not declared"
        " (add a document with kind: Project and metadata.name: other)",
    ),
    "two projects and an agent that names none": Bad(
        {
            "a.yaml": PROJECT
            + "---\n"
            + AGENT_HEAD.replace("myapp", "web")
            + "metadata:\n  name: dev\n"
        },
        "a.yaml:11:1",
        "several are declared (myapp, web) (add project: <name> under metadata)",
    ),
    "an agent and no project at all": Bad(
        {"a.yaml": AGENT + "metadata: {name: dev}\n"},
        "a.yaml:3:1",
        "no document of kind Project is declared",
    ),
    "env value that is a boolean": Bad(
        agent_spec("  agent:\n    env:\n      DEBUG: true\n"),
        "a.yaml:11:14",
        "spec.agent.env.DEBUG: expected a string, got a boolean (true) (quote it: 'true')",
    ),
    "env value that is null": Bad(
        agent_spec("  agent:\n    env:\n      TOKEN:\n"),
        "a.yaml:11:7",
        "expected a string, got null (an empty value) (write '' for an empty string)",
    ),
    "reserved CLAWKER_ env key": Bad(
        agent_spec("  agent:\n    env: {CLAWKER_AGENT: x}\n"),
        "a.yaml:10:11",
        "spec.agent.env.CLAWKER_AGENT: environment variable CLAWKER_AGENT is reserved",
    ),
    "bad env key": Bad(
        agent_spec("  agent:\n    env: {MY-VAR: x}\n"),
        "a.yaml:10:11",
        "invalid environment variable name 'MY-VAR' (use letters, digits and '_'",
    ),
    "cap_add NET_ADMIN": Bad(
        agent_spec("  security:\n    cap_add: [SYS_NICE, NET_ADMIN]\n"),
        "a.yaml:10:25",
        "spec.security.cap_add[1]: capability NET_ADMIN is refused:"
        " it would let the agent detach the firewall's BPF programs",
    ),
    "cap_add SYS_ADMIN written as cap_sys_admin": Bad(
        agent_spec("  security:\n    cap_add: [cap_sys_admin]\n"),
        "a.yaml:10:15",
        "capability SYS_ADMIN is refused",
    ),
    "cap_add BPF": Bad(
        agent_spec("  security:\n    cap_add:\n      - BPF\n"),
        "a.yaml:11:9",
        "capability BPF is refused",
    ),
    "cap_add NET_RAW (packet sockets)": Bad(
        agent_spec("  security:\n    cap_add: [NET_RAW]\n"),
        "a.yaml:10:15",
        "capability NET_RAW is refused: it opens packet and raw sockets",
    ),
    "cap_add SYS_TIME (the host's clock)": Bad(
        agent_spec("  security:\n    cap_add: [SYS_TIME]\n"),
        "a.yaml:10:15",
        "capability SYS_TIME is refused: it sets the host's clock",
    ),
    "cap_add DAC_READ_SEARCH (Shocker)": Bad(
        agent_spec("  security:\n    cap_add: [DAC_READ_SEARCH]\n"),
        "a.yaml:10:15",
        "capability DAC_READ_SEARCH is refused: it opens host files by handle",
    ),
    "cap_add SYSLOG": Bad(
        agent_spec("  security:\n    cap_add: [SYSLOG]\n"),
        "a.yaml:10:15",
        "capability SYSLOG is refused: it reads the host kernel's log",
    ),
    "cap_add ALL": Bad(
        agent_spec("  security:\n    cap_add: [ALL]\n"),
        "a.yaml:10:15",
        "capability ALL is refused: it includes NET_RAW, NET_ADMIN, SYS_ADMIN and BPF",
    ),
    "cap_add off the allowlist": Bad(
        agent_spec("  security:\n    cap_add: [SYS_TTY_CONFIG]\n"),
        "a.yaml:10:15",
        "capability SYS_TTY_CONFIG is refused: it is not on the list an agent may add"
        " (an agent may add IPC_LOCK, IPC_OWNER, LEASE, LINUX_IMMUTABLE, SYS_NICE, SYS_RESOURCE)",
    ),
    "unknown capability": Bad(
        agent_spec("  security:\n    cap_add: [SYS_PTRAC]\n"),
        "a.yaml:10:15",
        "unknown capability 'SYS_PTRAC' (did you mean 'SYS_PTRACE'?)",
    ),
    "domain with a scheme": Bad(
        agent_spec(
            "  security:\n    firewall: {add_domains: [github.com, 'https://pypi.org/simple']}\n"
        ),
        "a.yaml:10:42",
        "spec.security.firewall.add_domains[1]: 'https://pypi.org/simple' is a URL, not a domain"
        " (write only the host name: 'pypi.org')",
    ),
    "domain with a wildcard": Bad(
        agent_spec("  security:\n    firewall: {add_domains: ['*.example.com']}\n"),
        "a.yaml:10:30",
        "wildcards are not supported: '*.example.com'"
        " (write '.example.com' to allow example.com and all its subdomains)",
    ),
    "domain with a port": Bad(
        agent_spec("  security:\n    firewall: {add_domains: ['github.com:443']}\n"),
        "a.yaml:10:30",
        "'github.com:443' has a port (write only the host name: 'github.com'",
    ),
    "domain with bad characters": Bad(
        agent_spec("  security:\n    firewall: {add_domains: [exa_mple.com]}\n"),
        "a.yaml:10:30",
        "invalid domain 'exa_mple.com'",
    ),
    "workspace path that does not exist": Bad(
        agent_spec("  workspace:\n    path: ./missing\n"),
        "a.yaml:10:11",
        "spec.workspace.path: workspace path {tmp}/missing does not exist",
    ),
    "workspace path that is a file": Bad(
        {
            "a.yaml": PROJECT
            + "spec: {workspace: {path: a.yaml}}\n---\n"
            + AGENT
            + "metadata: {name: dev}\n"
        },
        "a.yaml:4:26",
        "workspace path {tmp}/a.yaml is not a directory",
    ),
    "bad workspace mode": Bad(
        agent_spec("  workspace: {mode: snapshop}\n"),
        "a.yaml:9:21",
        "spec.workspace.mode: unknown workspace mode 'snapshop'; use one of: bind, snapshot"
        " (did you mean 'snapshot'?)",
    ),
    "unknown harness": Bad(
        agent_spec("  build: {harness: codex}\n"),
        "a.yaml:9:20",
        "spec.build.harness: unknown harness 'codex'; use one of: claude, none",
    ),
    "package list item with spaces": Bad(
        agent_spec("  build: {packages: [ripgrep fd-find]}\n"),
        "a.yaml:9:22",
        "'ripgrep fd-find' is several packages (list them separately: [ripgrep, fd-find])",
    ),
    "reserved label key": Bad(
        {"a.yaml": AGENT_HEAD + "metadata: {name: dev, labels: {dev.clawker.agent: x}}\n"},
        "a.yaml:7:32",
        "metadata.labels[\"dev.clawker.agent\"]: label key 'dev.clawker.agent' is reserved",
    ),
    "a document that is a list": Bad(
        {"a.yaml": PROJECT + "---\n- kind: Agent\n"},
        "a.yaml:5:1",
        "expected a mapping with apiVersion, kind, metadata and spec; got a list",
    ),
    "a document that is a string": Bad(
        {"a.yaml": PROJECT + "---\n\n  hello\n"},
        "a.yaml:6:3",
        "got a string ('hello')",
    ),
    "an explicitly null mapping": Bad(
        agent_spec("  security:\n"),
        "a.yaml:9:3",
        "spec.security: expected a mapping, got null (an empty value) (write {} or remove the key)",
    ),
    "a NUL in an env value": Bad(
        agent_spec('  agent: {env: {A: "x\\0y"}}\n'),
        "a.yaml:9:20",
        "spec.agent.env.A: a NUL character (\\0) is not allowed in a value",
    ),
    "a NUL in a command argument": Bad(
        agent_spec('  command: [sh, "a\\x00b"]\n'),
        "a.yaml:9:17",
        "spec.command[1]: a NUL character (\\0) is not allowed in a value",
    ),
    "a NUL in post_init": Bad(
        agent_spec('  agent:\n    post_init: "make\\0"\n'),
        "a.yaml:10:16",
        "spec.agent.post_init: a NUL character (\\0) is not allowed in a value",
    ),
    "an env entry longer than Linux takes": Bad(
        agent_spec("  agent: {env: {BIG: " + "x" * 131068 + "}}\n"),
        "a.yaml:9:22",
        "spec.agent.env.BIG: 131072 bytes is longer than Linux allows for one argument or "
        "environment entry (131071 bytes)",
    ),
    "a command argument longer than Linux takes": Bad(
        agent_spec("  command: [sh, " + "a" * 131072 + "]\n"),
        "a.yaml:9:17",
        "spec.command[1]: 131072 bytes is longer than Linux allows",
    ),
    "more environment than an exec takes": Bad(
        agent_spec(
            "  agent:\n    env:\n" + "".join(f"      V{i}: {'y' * 100000}\n" for i in range(11))
        ),
        "a.yaml:9:3",
        "spec: the environment, scripts and command of this document take 1100122 bytes",
    ),
    "a raw BEL is reported at its own line and column": Bad(
        agent_spec("  agent: {env: {A: a\x07b}}\n"),
        "a.yaml:9:21",
        "control character U+0007 is not allowed in YAML text",
    ),
    "a raw ESC is reported at its own line and column": Bad(
        agent_spec("  command: [sh,\n    \x1b[31m]\n"),
        "a.yaml:10:5",
        "control character U+001B is not allowed in YAML text",
    ),
    "a raw NUL is reported at its own line and column": Bad(
        agent_spec("  agent: {env: {A: x\x00}}\n"),
        "a.yaml:9:21",
        "control character U+0000 is not allowed in YAML text",
    ),
    "an alias bomb": Bad(
        {
            "a.yaml": "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n"
                for p, n in zip("abcdefgh", "bcdefghi", strict=True)
            )
        },
        "a.yaml:1:1",
        "this document expands to more than 100000 values",
    ),
    "a spec file over 4 MiB": Bad(
        {"a.yaml": PROJECT + "# " + "x" * (4 * 1024 * 1024) + "\n"},
        "None",
        "a.yaml: larger than 4 MiB",
    ),
    "a workspace of /": Bad(
        agent_spec("  workspace:\n    path: /\n"),
        "a.yaml:10:11",
        "spec.workspace.path: workspace / is the whole filesystem",
    ),
    "a workspace of /run": Bad(
        agent_spec("  workspace:\n    path: /run\n"),
        "a.yaml:10:11",
        "workspace /run is inside the system directory /run",
    ),
    "a workspace of /etc": Bad(
        agent_spec("  workspace:\n    path: /etc\n"),
        "a.yaml:10:11",
        "is inside the system directory /etc",
    ),
    "a workspace of /proc": Bad(
        agent_spec("  workspace:\n    path: /proc\n"),
        "a.yaml:10:11",
        "is inside the system directory /proc",
    ),
    "a workspace of /sys": Bad(
        agent_spec("  workspace:\n    path: /sys\n"),
        "a.yaml:10:11",
        "is inside the system directory /sys",
    ),
    "a workspace of /dev": Bad(
        agent_spec("  workspace:\n    path: /dev\n"),
        "a.yaml:10:11",
        "is inside the system directory /dev",
    ),
    "a workspace of /usr/lib": Bad(
        agent_spec("  workspace:\n    path: /usr/lib\n"),
        "a.yaml:10:11",
        "is inside the system directory /usr",
    ),
    "a workspace of /root": Bad(
        agent_spec("  workspace:\n    path: /root\n"),
        "a.yaml:10:11",
        "workspace /root is a whole home directory",
    ),
    "a workspace of ~": Bad(
        agent_spec('  workspace:\n    path: "~"\n'),
        "a.yaml:10:11",
        "is a whole home directory",
    ),
    "a workspace of /home": Bad(
        agent_spec("  workspace:\n    path: /home\n"),
        "a.yaml:10:11",
        "workspace /home is a shared system directory",
    ),
    "a workspace of /var/lib/docker": Bad(
        agent_spec("  workspace:\n    path: /var/lib/docker\n"),
        "a.yaml:10:11",
        "is inside /var/lib/docker, the state or socket of Docker",
    ),
    "a workspace of /var/lib": Bad(
        agent_spec("  workspace:\n    path: /var/lib\n"),
        "a.yaml:10:11",
        "workspace /var/lib contains /var/lib/",
    ),
    "a workspace of /var": Bad(
        agent_spec("  workspace:\n    path: /var\n"),
        "a.yaml:10:11",
        "workspace /var is a shared system directory",
    ),
    "an allowlist entry of the public suffix .com": Bad(
        agent_spec("  security:\n    firewall: {add_domains: [github.com, .com]}\n"),
        "a.yaml:10:42",
        "'.com' would allow every domain under the public suffix 'com'",
    ),
    "an allowlist entry of the public suffix .co.uk": Bad(
        agent_spec("  security:\n    firewall: {add_domains: [github.com, .co.uk]}\n"),
        "a.yaml:10:42",
        "'.co.uk' would allow every domain under the public suffix 'co.uk'",
    ),
    "an allowlist entry of the public suffix .github.io": Bad(
        agent_spec("  security:\n    firewall: {add_domains: [github.com, .github.io]}\n"),
        "a.yaml:10:42",
        "'.github.io' would allow every domain under the public suffix 'github.io'",
    ),
}


def load_in(directory: Path, files: dict[str, str]) -> SpecErrors:
    for name, text in files.items():
        (directory / name).write_text(text)
    with pytest.raises(SpecErrors) as raised:
        load_specs(sorted(files))
    return raised.value


@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_a_bad_input_is_reported_where_it_is_written(
    case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    failure = load_in(tmp_path, case.files)

    expected = case.message.replace("{tmp}", str(tmp_path))
    assert len(failure.errors) == 1, str(failure)
    (error,) = failure.errors
    assert str(error.source) == case.location, str(error)
    assert expected in str(error)


def test_a_missing_input_path_is_an_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")

    with pytest.raises(SpecErrors) as raised:
        load_specs([missing])

    (error,) = raised.value.errors
    assert error.source is None
    assert str(error) == f"{missing}: no such file or directory (check the -f path)"


def test_errors_in_several_files_are_reported_together_in_reading_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    files = {
        "a.yaml": PROJECT + "spec:\n  build: {packages: ripgrep}\n  agent: {env: {X: null}}\n",
        "b.yaml": AGENT + "metadata: {name: Bad}\n"
        "spec: {command: claude, workspace: {mdoe: bind}}\n",
        "c.yaml": "key: [unclosed\n",
    }

    failure = load_in(tmp_path, files)

    located = [(str(e.source), e.key_path) for e in failure.errors]
    assert located == [
        ("a.yaml:5:21", "spec.build.packages"),
        ("a.yaml:6:20", "spec.agent.env.X"),
        ("b.yaml:3:18", "metadata.name"),
        ("b.yaml:4:17", "spec.command"),
        ("b.yaml:4:37", "spec.workspace.mdoe"),
        ("c.yaml:2:1", ""),
    ]
    assert str(failure).count("\n") == len(failure.errors) - 1


def test_a_file_that_is_not_yaml_does_not_cause_follow_up_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broken file may declare the project the agent names; only the syntax is reported."""
    monkeypatch.chdir(tmp_path)
    files = {
        "a.yaml": "apiVersion: clawker.dev/v1alpha1\nkind: Project\nmetadata: {name: [web\n",
        "b.yaml": AGENT + "metadata: {name: dev, project: web}\n",
    }

    failure = load_in(tmp_path, files)

    assert [str(e.source) for e in failure.errors] == ["a.yaml:4:1"]


def test_a_project_with_errors_still_counts_as_declared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    files = {"a.yaml": PROJECT + "spec: {build: {packages: [Bad Name]}}\n---\n" + "kind: Agent\n"}
    files["a.yaml"] += "apiVersion: clawker.dev/v1alpha1\nmetadata: {name: dev, project: myapp}\n"

    failure = load_in(tmp_path, files)

    assert [e.key_path for e in failure.errors] == ["spec.build.packages[0]"]


def test_one_missing_workspace_shared_by_several_agents_is_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    agents = "".join(
        f"---\napiVersion: clawker.dev/v1alpha1\nkind: Agent\nmetadata: {{name: {n}}}\n"
        for n in ("one", "two")
    )
    files = {"a.yaml": PROJECT + "spec: {workspace: {path: gone}}\n" + agents}

    failure = load_in(tmp_path, files)

    assert [str(e.source) for e in failure.errors] == ["a.yaml:4:26"]


def test_a_kind_that_is_not_a_string_is_an_unknown_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    failure = load_in(tmp_path, {"a.yaml": "apiVersion: clawker.dev/v1alpha1\nkind: [Agent]\n"})

    assert [str(e) for e in failure.errors] == [
        "a.yaml:2:7: kind: unknown kind a list; supported kinds: Agent, Project"
    ]


def test_keys_merged_in_with_yaml_merge_keys_are_validated_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = PROJECT + "spec:\n  build: &base {packages: [jq]}\n  agent:\n    <<: *base\n"

    failure = load_in(tmp_path, {"a.yaml": text})

    # The merged key has no position of its own: the mapping it was merged into is named.
    assert [(str(e.source), e.key_path) for e in failure.errors] == [
        ("a.yaml:7:5", "spec.agent.packages")
    ]


def test_spec_errors_survive_pickling() -> None:
    error = SpecError(SourceRef("a.yaml", 1, 2), "kind", "missing kind", "add kind")

    copy = pickle.loads(pickle.dumps(SpecErrors([error])))

    assert copy.errors == [error]
    assert str(copy) == str(error)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_is_refused_without_reading_it(device: str) -> None:
    with pytest.raises(SpecErrors) as raised:
        load_specs([device])
    assert [e.message for e in raised.value.errors] == [
        f"{device}: not a regular file (a device, FIFO or socket)"
    ]


def test_a_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    """Opening a FIFO would block until a writer came: it is never opened."""
    fifo = tmp_path / "agents.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SpecErrors) as raised:
        load_specs([str(fifo)])
    assert "not a regular file" in str(raised.value)


def test_stdin_is_read_up_to_the_cap_only() -> None:
    class Endless(io.StringIO):
        def read(self, size: int | None = -1) -> str:
            assert size is not None and size > 0  # never "read everything"
            return "#" * size

    with pytest.raises(SpecErrors) as raised:
        load_specs(["-"], stdin=Endless())
    assert [e.message for e in raised.value.errors] == ["<stdin>: larger than 4 MiB"]


def test_a_closed_stdin_is_an_error_not_a_traceback() -> None:
    closed = io.StringIO()
    closed.close()
    with pytest.raises(SpecErrors) as raised:
        load_specs(["-"], stdin=closed)
    assert "standard input is closed" in str(raised.value)


def test_a_standard_tag_gives_its_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`!!str 12` is YAML for the string "12"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yaml").write_text(
        AGENT_HEAD + "metadata: {name: dev}\nspec:\n  agent: {env: {A: !!str 12}}\n"
    )
    (agent,) = load_specs(["a.yaml"]).agents
    assert agent.agent.env == {"A": "12"}
