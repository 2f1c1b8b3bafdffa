"""Command dispatcher. A command is a module exposing ``add_arguments(parser)`` and
``run(args) -> int``: every registered training stage is one (``fuse/cli/train.py``), the
others are registered here or by a method (``register_command``). ``run_command`` is the one
place where a ``FuseError`` becomes an ``error:`` line and exit code 2 (for the scripts in
``scripts/`` too)."""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from fuse.errors import EXIT_BAD_INPUT, FuseError
from fuse.registry import Registry


@dataclass(frozen=True)
class Command:
    """A ``python -m fuse <name>`` command besides the training stages: its module and help line."""

    name: str
    module: str
    help: str


COMMANDS: Registry[Command] = Registry("command")


def register_command(command: Command) -> Command:
    return COMMANDS.register(command.name, command)


for _command in (
    Command("eval", "fuse.cli.evaluate", "evaluate predictions against ground truth (a registered protocol)"),
    Command("infer", "fuse.cli.infer", "predict depth maps, colored PNGs and panels"),
    Command("convert", "fuse.cli.convert", "convert an upstream FUSE / stage-1 / DA-V2 file into this project's format"),
    Command("export", "fuse.cli.export", "export a checkpoint to ONNX or TorchScript for one input size, verified "
            "against PyTorch"),
    Command("compare", "fuse.cli.compare", "several methods on the same frames: one protocol, degradations, costs, "
            "panels"),
):
    register_command(_command)


def run_command(run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """``run(args)``; a ``FuseError`` is printed as one ``error:`` line and gives exit code 2
    (re-raised with ``args.debug``, to see the traceback)."""
    try:
        return int(run(args) or 0)
    except FuseError as error:
        if getattr(args, "debug", False):
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _stage_commands() -> dict[str, tuple[str, str]]:
    from fuse.train.stages import STAGES

    return {name: ("fuse.cli.train", STAGES.get(name).description) for name in STAGES.names()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuse", description="Train, run and evaluate image / event "
                                     "depth models: one command per training stage, plus infer, eval and convert.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules, parsers = {}, {}
    others = {name: (COMMANDS.get(name).module, COMMANDS.get(name).help) for name in COMMANDS.names()}
    for name, (module_name, help_text) in {**_stage_commands(), **others}.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        parsers[name] = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(parsers[name])
    args, unknown = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if unknown:  # the command's own usage, not the top-level one (argparse exits with code 2)
        parsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return run_command(modules[args.command].run, args)
