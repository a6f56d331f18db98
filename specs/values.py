"""Rules for single values of the spec language: names, environment, labels, domains,
capabilities, packages, images and commands.

Each rule is a pydantic validator. It returns the normalised value or raises a `clawker` error
whose message and hint reach the user unchanged (see `fail`), so the wording lives next to the rule.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import ipaddress
import json
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from publicsuffixlist import PublicSuffixList
from pydantic_core import PydanticCustomError

from specs.capabilities import (
    ADDABLE_CAPABILITIES,
    AGENT_BASE_CAPABILITIES,
    LINUX_CAPABILITIES,
    REFUSED_CAPABILITIES,
)

ERROR_TYPE = "clawker"

_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
# A project is also part of the image name clawker-<project>; Docker's reference grammar allows
# only '_', '__' or runs of '-' between letters and digits there.
_IMAGE_NAME_PART = re.compile(r"^[a-z0-9]+(?:(?:__|_|-+)[a-z0-9]+)*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:_-]+)?$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
_PLAIN_FLOW_ITEM = re.compile(r"^[A-Za-z0-9_./=+@%-]+$")


def fail(message: str, hint: str | None = None) -> NoReturn:
    """Reject a value with a message (and hint) that is shown to the user as written."""
    raise PydanticCustomError(ERROR_TYPE, "{message}", {"message": message, "hint": hint})


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate `word` was most likely meant to be, ignoring case, '_' and '-'."""
    options = list(candidates)
    squashed = {_squash(option): option for option in options}
    if _squash(word) in squashed:
        return squashed[_squash(word)]
    matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _squash(word: str) -> str:
    return word.lower().replace("_", "").replace("-", "")


def describe(value: Any) -> str:
    """Name a YAML value's type for a message, with the value itself when it is short."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({_quote(value)})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, datetime.date):
        return f"a date ({value.isoformat()})"
    return type(value).__name__


def shown(value: Any) -> str:
    """A value as a message shows it: a string quoted, anything else by its type."""
    return _quote(value) if isinstance(value, str) else describe(value)


def flow_list(items: Sequence[str]) -> str:
    """Render `items` as a YAML flow sequence that a user can paste into a spec."""
    return "[" + ", ".join(i if _PLAIN_FLOW_ITEM.match(i) else json.dumps(i) for i in items) + "]"


def _quote(text: str, limit: int = 40) -> str:
    shown = text if len(text) <= limit else text[: limit - 3] + "..."
    return "'" + shown + "'"


def agent_name(value: str) -> str:
    """An agent name: it becomes part of container and volume names."""
    _check_name(value, "agent")
    return value


def project_name(value: str) -> str:
    """A project name: it becomes part of container, volume and image names."""
    _check_name(value, "project")
    if not _IMAGE_NAME_PART.match(value):
        fail(
            f"project name {_quote(value)} cannot be part of the image name clawker-{value}",
            "separate letters and digits with '-', '_' or '__' only",
        )
    return value


def _check_name(value: str, what: str) -> None:
    if _NAME.match(value):
        return
    rule = (
        "use 1-63 lowercase letters, digits, '-' or '_', starting and ending with a letter or"
        " digit; it becomes part of Docker names like clawker.<project>.<agent>"
    )
    if len(value) > 63:
        fail(f"{what} name {_quote(value)} is {len(value)} characters long", rule)
    if "." in value:
        suggestion = value.replace(".", "-").lower()
        fail(
            f"invalid {what} name {_quote(value)}: dots separate the parts of Docker names",
            f"use '-' instead, e.g. {_quote(suggestion)}",
        )
    if value != value.lower() and _NAME.match(value.lower()):
        fail(
            f"invalid {what} name {_quote(value)}: Docker names must be lowercase",
            f"use {_quote(value.lower())}",
        )
    fail(f"invalid {what} name {_quote(value)}", rule)


def text(value: Any) -> Any:
    """A string-valued scalar: numbers become strings (like compose); booleans and null do not,
    because `true`, `yes` or an empty value are rarely meant as the text they would become."""
    if isinstance(value, bool):
        written = "true" if value else "false"
        fail(f"expected a string, got a boolean ({written})", f"quote it: '{written}'")
    if value is None:
        fail("expected a string, got null (an empty value)", "write '' for an empty string")
    if isinstance(value, int | float):
        return str(value)
    return value


def env_name(value: Any) -> Any:
    """An environment variable name that clawker does not reserve for itself."""
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        fail(
            f"invalid environment variable name {_quote(str(value))}",
            "use letters, digits and '_', not starting with a digit",
        )
    if value.upper().startswith("CLAWKER_"):
        fail(
            f"environment variable {value} is reserved",
            "clawker sets the CLAWKER_* variables itself; rename it",
        )
    return value


def label_key(value: Any) -> Any:
    """A Docker label key outside clawker's own `dev.clawker.` namespace."""
    if not isinstance(value, str) or not _LABEL_KEY.match(value):
        fail(
            f"invalid label key {_quote(str(value))}",
            "use letters, digits, '.', '-', '_' and '/',"
            " starting and ending with a letter or digit",
        )
    if value.startswith("dev.clawker."):
        fail(
            f"label key {_quote(value)} is reserved",
            "clawker owns dev.clawker.*; use another prefix",
        )
    return value


def domain(value: Any) -> Any:
    """A host name for the firewall allowlist, lowercased; a leading dot means the apex and every
    subdomain. Schemes, ports, paths, wildcards and IP addresses are refused with the fix."""
    if not isinstance(value, str):
        return value  # the str type reports it
    lowered = value.strip().lower()
    if "://" in lowered:
        host = lowered.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
        fail(f"{_quote(value)} is a URL, not a domain", f"write only the host name: '{host}'")
    if "*" in lowered:
        apex = lowered.lstrip("*.")
        fail(
            f"wildcards are not supported: {_quote(value)}",
            f"write '.{apex}' to allow {apex} and all its subdomains",
        )
    if "/" in lowered:
        host = lowered.split("/", 1)[0]
        fail(f"{_quote(value)} has a path", f"write only the host name: '{host}'")
    if _is_ip_address(lowered.strip("[]")):
        fail(
            f"{_quote(value)} is an IP address, not a domain",
            "name the domain; the firewall allows the addresses it resolves to",
        )
    if ":" in lowered:
        host = lowered.split(":", 1)[0]
        fail(
            f"{_quote(value)} has a port",
            f"write only the host name: '{host}'; the firewall does not filter by port",
        )
    subdomains = lowered.startswith(".")
    apex = lowered.removeprefix(".").removesuffix(".")  # a trailing dot is a fully qualified name
    if len(apex) > 253 or not all(_DNS_LABEL.match(label) for label in apex.split(".")):
        fail(
            f"invalid domain {_quote(value)}",
            "write a host name such as 'github.com', or '.example.com' for it and its subdomains",
        )
    if subdomains and _public_suffixes().is_public(apex):
        fail(
            f"{_quote(value)} would allow every domain under the public suffix '{apex}'",
            f"name the sites you need, e.g. '.example.{apex}'",
        )
    return "." + apex if subdomains else apex


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    """The Public Suffix List bundled with publicsuffixlist (no network), ICANN and private
    sections; an unknown top-level name (a home network's `.lan`) is not taken as public."""
    return PublicSuffixList(accept_unknown=False)


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def capability(value: Any) -> Any:
    """A Linux capability an agent may add, written with or without CAP_ in any case, returned
    as e.g. SYS_NICE. Only ADDABLE_CAPABILITIES pass; the refusal says why."""
    if not isinstance(value, str):
        return value  # the str type reports it
    name = value.strip().upper().removeprefix("CAP_")
    addable = ", ".join(sorted(ADDABLE_CAPABILITIES - AGENT_BASE_CAPABILITIES))
    if name == "ALL":
        fail(
            "capability ALL is refused: it includes NET_RAW, NET_ADMIN, SYS_ADMIN and BPF",
            f"name only the capabilities the agent needs; an agent may add {addable}",
        )
    if name in REFUSED_CAPABILITIES:
        fail(
            f"capability {name} is refused: {REFUSED_CAPABILITIES[name]}",
            "remove it; agents share the host's kernel, and the firewall must stay out of "
            "their reach",
        )
    if name not in LINUX_CAPABILITIES:
        guess = closest(name, LINUX_CAPABILITIES)
        hint = f"did you mean '{guess}'?" if guess else "see capabilities(7) for the names"
        fail(f"unknown capability {_quote(value)}", hint)
    if name not in ADDABLE_CAPABILITIES:
        fail(
            f"capability {name} is refused: it is not on the list an agent may add",
            f"an agent may add {addable}",
        )
    return name


def package(value: Any) -> Any:
    """A Debian package name, optionally with ':arch' and '=version'."""
    if not isinstance(value, str):
        return value  # the str type reports it
    words = value.split()
    if len(words) > 1:
        fail(f"{_quote(value)} is several packages", f"list them separately: {flow_list(words)}")
    if not _PACKAGE.match(value):
        fail(
            f"invalid apt package name {_quote(value)}",
            "use a Debian package name such as 'ripgrep', optionally with '=version'",
        )
    return value


def image(value: str) -> str:
    """A Docker image reference such as 'buildpack-deps:bookworm-scm'."""
    if not _IMAGE.match(value):
        fail(
            f"invalid image reference {_quote(value)}",
            "use a Docker image name such as 'debian:bookworm'",
        )
    return value


def host_env_name(value: Any) -> Any:
    """The name of a host environment variable (clawker's own names are allowed: it is read on
    the host, never set in the agent)."""
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        fail(
            f"invalid environment variable name {_quote(str(value))}",
            "use letters, digits and '_', not starting with a digit",
        )
    return value


def key_file_path(value: Any) -> Any:
    """A host file holding a key: absolute, or under the host user's home (`~/...`)."""
    value = text(value)
    if not isinstance(value, str) or not (value.startswith("/") or value.startswith("~/")):
        fail(
            f"key file {_quote(str(value))} is not an absolute path",
            "write an absolute path, or one under your home such as ~/.config/anthropic/key",
        )
    return value


def workspace_path(value: str) -> str:
    """A workspace path; relative ones are resolved later, against the file they are written in."""
    if not value.strip():
        fail(
            "workspace path is empty", "write '.' for the directory of this file, or remove the key"
        )
    return value


def command_shape(value: Any) -> Any:
    """The user command is an argv list; a plain string would need a shell to be split."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError:
            argv = [value]
        fail(
            "expected a list of arguments, got a string",
            f"write it as a list: {flow_list(argv or [value])}",
        )
    if isinstance(value, list | tuple) and not value:
        fail("command must not be empty", "remove the key to run claude, or name a program")
    return value


def command_program(value: tuple[str, ...]) -> tuple[str, ...]:
    """The first argument names the program, so it cannot be empty."""
    if not value[0].strip():
        fail("the program (the first item) is empty", "name the program to run, e.g. [claude]")
    return value


def choice(what: str, choices: Sequence[str]) -> Callable[[Any], Any]:
    """A validator accepting exactly one of `choices`, suggesting the closest on a typo."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and value in choices:
            return value
        options = ", ".join(choices)
        if not isinstance(value, str):
            fail(f"expected one of {options}; got {describe(value)}")
        guess = closest(value, choices)
        fail(
            f"unknown {what} {_quote(value)}; use one of: {options}",
            f"did you mean '{guess}'?" if guess else None,
        )

    return check


def sorted_unique(values: tuple[str, ...]) -> tuple[str, ...]:
    """Order-free lists are kept sorted and without repeats, so equal specs compare equal."""
    return tuple(sorted(set(values)))
