"""Any Python callable as a turn handler (``chatbridge pull-agent --handler module:function``).

The signature::

    handler(turn: Turn) -> Reply          # or handler(text: str): a first parameter
                                          # annotated ``str`` receives ``turn.content``

- sync or async; a plain function runs in a worker thread (a blocking SDK call does not stall
  polling);
- returns the reply text, ``Handoff(reason, content)``, ``NoReply()`` or ``None`` (no reply),
  or an iterator / async iterator of text chunks (a streamed reply);
- raising ``TurnError(code)`` answers with ``error_message`` and that code; any other
  exception with code ``handler_error``.

An ``Agent`` instance works too: its ``on_message`` handler is used.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from chatbridge.agent.app import Agent
from chatbridge.agent.turn import MessageHandler, Turn
from chatbridge.errors import ConfigError


def adapt_handler(fn: Callable[..., Any]) -> MessageHandler:
    """Make any callable an ``on_message`` handler.

    ``fn`` takes the ``Turn``, or the turn's text when its first parameter is annotated
    ``str``. An ``async def`` (or async generator) runs on the event loop; a plain function runs
    in a worker thread, so a blocking call does not stall polling. A sync generator streams its
    chunks. Results are those of ``chatbridge.agent.turn``.
    """
    wants_text = _takes_text(fn)

    def argument(turn: Turn) -> Any:
        return turn.content if wants_text else turn

    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return lambda turn: fn(argument(turn))

    async def in_thread(turn: Turn) -> Any:
        result = await asyncio.to_thread(fn, argument(turn))
        if inspect.isawaitable(result):  # an object with an async __call__
            result = await result
        if isinstance(result, Iterator):
            return _chunks_in_thread(result)
        return result

    return in_thread


def _takes_text(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0].annotation in (str, "str")


async def _chunks_in_thread(chunks: Iterator[Any]) -> AsyncIterator[Any]:
    done = object()
    while (chunk := await asyncio.to_thread(next, chunks, done)) is not done:
        yield chunk


def load_handler(spec: str) -> MessageHandler:
    """Import ``module:attribute`` (the current directory is importable): an ``Agent`` (its
    ``on_message`` handler is used) or any callable (see ``adapt_handler``).

    Raises:
        ConfigError: a bad spec, an import error, a missing attribute or not a callable.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--handler must look like module:function, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"--handler {spec}: cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"--handler {spec}: {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if isinstance(target, Agent):
        handler = target.handlers.message
        if handler is None:
            raise ConfigError(f"--handler {spec}: the agent has no on_message handler")
        return handler
    if not callable(target):
        raise ConfigError(f"--handler {spec}: {type(target).__name__} is not callable")
    return adapt_handler(target)
