"""What the two commands, ``anvil`` and ``anvil-forge``, share about their console.

* :func:`parse_arguments`: wrong arguments are reported with the usage of the subcommand they were given to
  (``usage: anvil-forge token revoke ...``), not the top-level one.
* :func:`quiet_closed_pipes`: output into a pipe whose reader has gone (``anvil connect ... | head -1``) is dropped
  instead of ending in a ``BrokenPipeError`` traceback; the command finishes its work and exits with its own status.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

_GIVEN = "_anvil_usage_parser"


def parse_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with unknown arguments reported by the deepest subcommand given."""
    _mark_subparsers(parser)
    args, unknown = parser.parse_known_args(argv)
    given: argparse.ArgumentParser = getattr(args, _GIVEN, parser)
    if hasattr(args, _GIVEN):
        delattr(args, _GIVEN)
    if unknown:
        given.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _mark_subparsers(parser: argparse.ArgumentParser) -> None:
    # A subparser's defaults override its parent's, so after parsing the attribute names the deepest one used.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(**{_GIVEN: sub})
                _mark_subparsers(sub)


@contextlib.contextmanager
def quiet_closed_pipes() -> Iterator[None]:
    """Within: writes to stdout or stderr after its reader has gone are dropped (and so is the rest of that stream)."""
    saved = sys.stdout, sys.stderr
    guarded = [_Guarded(stream) if stream is not None else None for stream in saved]
    sys.stdout, sys.stderr = guarded  # type: ignore[assignment]
    try:
        yield
    finally:
        for stream in guarded:
            if stream is not None:
                stream.flush()
        sys.stdout, sys.stderr = saved


class _Guarded:
    """A text stream that turns ``BrokenPipeError`` into silence."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        # Point the descriptor at /dev/null, so that what is still buffered (flushed again when the interpreter
        # exits) goes nowhere instead of failing once more.
        self._gone = True
        with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
            fd = self._stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, fd)
            finally:
                os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
