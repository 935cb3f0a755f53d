"""SCRIPT transformations: JavaScript in a QuickJS sandbox.

The convention (seed 003's transform scripts take the payload and return the new one).
The script is the body of a function of ``(payload, context)``; either

* ``return`` the result from the body::

      const total = payload.items.reduce((s, i) => s + i.price * i.qty, 0);
      return { id: payload.id, total };

* or define ``transform(payload, context)``, which is called when the body returns
  nothing::

      function transform(payload, context) { return { id: payload.id }; }

``payload`` is the input (for scheduled jobs ``{data, metadata}``); ``context`` is the run's
metadata. Both arrive as fresh JSON copies and the result leaves through
``JSON.stringify``: it must be JSON (``undefined``, functions and Promises are errors;
``null`` is fine). ``console.log`` and friends exist and do nothing.

Isolation: every evaluation gets a new QuickJS runtime (own heap, own globals), built in
the calling thread and dropped afterwards, so nothing -- globals, prototypes, caches --
survives from one evaluation to the next, let alone between tenants. No host function is
exposed: no ``require``, ``process``, ``std``/``os``, module loader, network, file system
or timers. Each evaluation is bounded by ``Limits`` (time, heap, stack); a script that hits
one fails with ``ExpressionRuntimeError`` and the runtime is discarded. A fresh runtime costs
~0.1 ms; the time limit is QuickJS's ``clock()`` (process CPU time), so contention only
cuts scripts off sooner. The GIL is released while JavaScript runs; callers on an event
loop should run ``transform`` in a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import _quickjs
import orjson

from junctionbox.errors import ExpressionRuntimeError

from .base import DEFAULT_LIMITS, EMPTY_CONTEXT, Limits, Loc, compile_error

# Everything before the user's code sits on its first line, so line numbers match the
# script; columns on line 1 are shifted by len(_PREFIX) and corrected in messages.
_PREFIX: Final = (
    "(function(__jb_in,__jb_ctx){"
    "var console={log(){},info(){},warn(){},error(){},debug(){}};"
    "var __jb_r=(function(payload,context){"
)
_SUFFIX: Final = (
    "\n;if(typeof transform==='function'){return transform(payload,context);}"
    "\n})(JSON.parse(__jb_in),JSON.parse(__jb_ctx));"
    "if(__jb_r===undefined)return undefined;"
    "if(__jb_r!==null&&typeof __jb_r.then==='function')return 0;"
    "var __jb_s=JSON.stringify(__jb_r);"
    "return __jb_s===undefined?1:__jb_s;"
    "\n})"
)
# Besides a JSON string, the wrapper returns undefined (None here), 0 for a Promise and 1
# for a value JSON.stringify drops (a function, a symbol).
_PROMISE: Final = 0
_NOT_JSON: Final = 1
_LOCATION: Final = re.compile(r"<input>:(\d+):(\d+)")


@dataclass(frozen=True, slots=True)
class ScriptTransformer:
    """A validated script. Thread-safe: nothing is shared between evaluations."""

    source: str
    limits: Limits

    def transform(self, value: Any, context: Mapping[str, Any] = EMPTY_CONTEXT) -> Any:
        try:
            payload_json = orjson.dumps(value).decode()
            context_json = orjson.dumps(dict(context)).decode()
        except TypeError as exc:
            raise ExpressionRuntimeError(f"script input is not JSON: {exc}") from exc
        ctx = _new_context(self.limits)
        try:
            fn = ctx.eval(_wrap(self.source))
            result = fn(payload_json, context_json)
        except _quickjs.JSException as exc:
            if _memory_exhausted(ctx):
                reason = _memory_message(self.limits)
            else:
                reason = _describe(exc, self.source, self.limits)
            raise ExpressionRuntimeError(f"script failed: {reason}") from exc
        finally:
            del ctx
        if result is None:
            raise ExpressionRuntimeError(
                "script returned undefined: `return` a value from the script "
                "or define transform(payload, context)"
            )
        if isinstance(result, str):
            return orjson.loads(result)
        if result == _PROMISE and not isinstance(result, bool):
            raise ExpressionRuntimeError(
                "script returned a Promise: async scripts are not supported"
            )
        # _NOT_JSON, or anything else if the script replaced JSON.stringify
        raise ExpressionRuntimeError("script returned a value that is not JSON (a function?)")


def _new_context(limits: Limits) -> _quickjs.Context:
    ctx = _quickjs.Context()
    ctx.set_memory_limit(limits.memory_limit)
    ctx.set_max_stack_size(limits.stack_limit)
    ctx.set_time_limit(limits.time_limit)
    return ctx


def _wrap(source: str) -> str:
    return _PREFIX + source + _SUFFIX


def _location(text: str, source: str) -> tuple[int, int] | None:
    """The first position in ``text`` that falls inside the user's script."""
    last_line = source.count("\n") + 1
    for line_s, col_s in _LOCATION.findall(text):
        line, col = int(line_s), int(col_s)
        if line == 1:
            col -= len(_PREFIX)
            if col < 1:
                continue
        if line > last_line:  # inside our suffix: the script's end is the culprit
            line = last_line
            col = len(source.rsplit("\n", 1)[-1]) + 1
        return line, col
    return None


def _describe(exc: _quickjs.JSException, source: str, limits: Limits) -> str:
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    if isinstance(exc, _quickjs.StackOverflow) or "Maximum call stack size" in first:
        return f"stack limit exceeded ({limits.stack_limit // 1024} KiB): {first}"
    if first == "InternalError: interrupted":
        return f"time limit exceeded ({limits.time_limit_ms} ms)"
    if first == "InternalError: out of memory":
        return _memory_message(limits)
    if first == "null":
        # QuickJS throws null when the heap is too full to build the error object, and by
        # the time we look the script's frames are freed: the two causes look the same.
        return f"null (thrown by the script, or {_memory_message(limits)} with no room left)"
    where = _location(text, source)
    return f"{first} (line {where[0]}, column {where[1]})" if where else first


def _memory_exhausted(ctx: _quickjs.Context) -> bool:
    """Whether the heap is still at its limit (memory held by globals). Memory held by the
    script's own frames is freed before we can look."""
    usage = ctx.memory()
    limit = int(usage.get("malloc_limit", 0))
    return limit > 0 and int(usage.get("malloc_size", 0)) >= limit * 0.95


def _memory_message(limits: Limits) -> str:
    return f"memory limit exceeded ({limits.memory_limit // (1024 * 1024)} MiB)"


def compile_script(
    source: str, *, limits: Limits = DEFAULT_LIMITS, loc: Loc = ("transformScript",)
) -> ScriptTransformer:
    """Validate ``source``: a syntax error raises ``ExpressionCompileError`` with its line and
    column. Nothing in the script runs (it is only parsed, as a function body)."""
    if not isinstance(source, str) or not source.strip():
        raise compile_error(loc, "a script is required")
    if "\x00" in source:
        raise compile_error(loc, "the script contains a NUL character")
    ctx = _new_context(limits)
    try:
        compiled = ctx.eval(_wrap(source))
    except _quickjs.JSException as exc:
        raise compile_error(loc, _describe(exc, source, limits)) from exc
    finally:
        del ctx
    if not isinstance(compiled, _quickjs.Object):
        raise compile_error(loc, "the script must be a function body (it closes the wrapper)")
    return ScriptTransformer(source, limits)
