"""`clawker image base|build|ls`: argument parsing and rendering only.

Registered by cli.main with `add_image_verbs(isub)`. Each verb imports docker-py, the image
code and (for `build`) the spec language when it runs, so registering them costs nothing at
start-up.
"""

# Each verb imports what it uses inside its handler: registering them loads nothing heavy.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cli.style import Style, fail_mark, ok_mark
from cli.table import render_table
from reconciler import naming

if TYPE_CHECKING:
    from reconciler.images import ImageSummary

__all__ = ["add_image_verbs", "build_progress"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
IMAGE_HEADERS = ("IMAGE", "PROJECT", "INPUTS", "CREATED", "SIZE")


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def build_progress(what: str, style: Style, verbose: bool) -> Callable[[str], None]:
    """Build output on stderr: `… building <what>` once the build starts, then its steps (with
    `verbose`: the builder's every line)."""
    from reconciler.images import is_progress_line

    width = max(40, shutil.get_terminal_size((100, 20)).columns - 4)
    started = False

    def on_line(line: str) -> None:
        nonlocal started
        if not started:
            started = True
            _err(f"  … building {what}")
        if verbose:
            _err(f"    {line}")
        elif is_progress_line(line):
            text = line if len(line) <= width else line[: width - 1] + "…"
            _err(f"    {style(text, 'dim')}")

    return on_line


def cmd_image_base(args: argparse.Namespace) -> int:
    from reconciler.docker.engine import DockerEngine
    from reconciler.images import observed_image_labels
    from reconciler.images.base import BaseImageError, base_image_is_current, build_base_image

    port = DockerEngine(scope=args.settings)
    ref = args.tag or f"clawker-base:{args.suite}"
    style = Style(sys.stderr)
    existing = port.image_id(ref)
    labels = observed_image_labels(port.list_images(), ref)
    if existing and labels is not None and base_image_is_current(labels) and not args.force:
        _out(f"{ref} exists ({existing[7:19]}); --force rebuilds it")
        return EXIT_OK
    _err(f"  … building {ref} from this host's apt sources (mmdebstrap)")
    try:
        image_id = build_base_image(port, suite=args.suite, ref=ref)
    except BaseImageError as exc:
        _err(f"error: {exc}")
        return EXIT_FAIL
    _err(f"  {ok_mark(style)} imported {ref} ({image_id[7:19]})")
    return EXIT_OK


def cmd_image_build(args: argparse.Namespace) -> int:
    from reconciler.controlplane.paths import StatePaths, protected_paths
    from reconciler.docker.engine import DockerEngine, engine_socket
    from reconciler.images import ImageError, ensure_project_image, project_image_inputs
    from specs import load_specs

    if not args.filename:
        _err("error: no spec files given; pass -f FILE, -f DIR or -f - (stdin)")
        return EXIT_USAGE
    paths = StatePaths(args.settings.state_dir)
    specset = load_specs(args.filename, protected=protected_paths(paths, engine_socket()))
    for warning in specset.warnings:
        _err(f"warning: {warning}")
    try:
        targets = project_image_inputs(specset.agents, args.settings)
    except ImageError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    for warning in (w for inputs in targets for w in inputs.warnings):
        _err(f"warning: {warning}")
    if not targets:
        _out("No agents declared; nothing to build.")
        return EXIT_OK
    out, err = Style(sys.stdout), Style(sys.stderr)
    port = DockerEngine(scope=args.settings)
    failed = 0
    for inputs in targets:
        started = time.monotonic()
        try:
            result = ensure_project_image(
                port,
                inputs,
                force=args.force,
                on_line=build_progress(f"image {inputs.ref}", err, args.verbose),
                settings=args.settings,
            )
        except ImageError as exc:
            failed += 1
            detail = str(exc).replace("\n", "\n    ")
            _out(f"{fail_mark(out)} image {inputs.ref}: {detail}")
            continue
        if result.built:
            took = time.monotonic() - started
            _out(
                f"{ok_mark(out)} image {result.ref} built ({result.reason}) "
                f"{_short_id(result.image_id)} in {took:.1f}s"
            )
        else:
            _out(
                f"{ok_mark(out)} image {result.ref} {out('up to date', 'dim')} "
                f"{_short_id(result.image_id)}"
            )
    return EXIT_FAIL if failed else EXIT_OK


def _ago(created: int, now: float) -> str:
    seconds = max(0, int(now - created))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


def _size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g}{unit}"
    return f"{size}B"


def image_rows(images: Sequence[ImageSummary], now: float) -> list[list[str]]:
    return [
        [
            i.ref,
            i.project or "-",
            i.inputs[:12] or "-",
            _ago(i.created, now),
            _size(i.size),
        ]
        for i in images
    ]


def image_data(images: Sequence[ImageSummary]) -> list[dict[str, Any]]:
    return [
        {
            "ref": i.ref,
            "refs": list(i.refs),
            "id": i.id,
            "project": i.project or None,
            "purpose": i.purpose or None,
            "inputs": i.inputs or None,
            "created": dt.datetime.fromtimestamp(i.created, dt.UTC).isoformat(),
            "size": i.size,
        }
        for i in images
    ]


def cmd_image_ls(args: argparse.Namespace) -> int:
    from reconciler.docker.engine import DockerEngine
    from reconciler.images import list_clawker_images

    images = list_clawker_images(DockerEngine(scope=args.settings))
    if args.output == "json":
        _out(json.dumps({"kind": "ImageList", "items": image_data(images)}, indent=2))
    elif images:
        _out(render_table(IMAGE_HEADERS, image_rows(images, time.time())))
    else:
        _err("No images found; `clawker image build -f FILE` builds a project's image.")
    return EXIT_OK


def add_image_verbs(image_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `image base`, `image build` and `image ls` under `clawker image`."""
    p = image_subparsers.add_parser(
        "base", help="build the Debian base image from this host's apt sources"
    )
    p.add_argument("--suite", default="bookworm", help="Debian suite (default bookworm)")
    p.add_argument(
        "--tag", default="", help=f"image reference (default {naming.BASE_IMAGE_DEFAULT})"
    )
    p.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    p.set_defaults(func=cmd_image_base)

    p = image_subparsers.add_parser(
        "build",
        help="build each declared project's image (only when its inputs changed)",
        description="Build clawker-<project>:default for every project the specs declare. "
        "An image whose inputs are unchanged is left as it is.",
    )
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        metavar="PATH",
        help="spec file, directory of *.yaml/*.yml, or - for stdin (repeatable)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="rebuild even when up to date, without Docker's layer cache (refetches apt packages)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show the builder's full output")
    p.set_defaults(func=cmd_image_build)

    p = image_subparsers.add_parser("ls", help="list the images clawker built")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_image_ls)
