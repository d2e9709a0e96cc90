"""`Provider` declares every hook the runtime calls; the runtime looks none up by name.

The runtime is every SDK module but `provider.py` itself (the start/stop sequence in
`runtime.py`, the link hooks in `link_ops.py`, ...): a hook call moved between them is still
seen.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
from pathlib import Path
from typing import cast

import wasmcloud_provider_sdk.runtime as runtime_module
from wasmcloud_provider_sdk import Provider, ProviderContext

PROVIDER_NAMES = ("provider", "_provider")


def _is_provider(node: ast.expr) -> bool:
    """`self.provider` / `self._provider`."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr in PROVIDER_NAMES
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def _runtime_tree() -> ast.Module:
    """Every SDK module but the one that declares `Provider`, as one module."""
    package = Path(inspect.getfile(runtime_module)).parent
    body: list[ast.stmt] = []
    for path in sorted(package.glob("*.py")):
        if path.name != "provider.py":
            body += ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body
    return ast.Module(body=body, type_ignores=[])


def hooks_called_by_runtime() -> set[str]:
    """Every `self.provider.<hook>` / `self._provider.<hook>` the runtime touches."""
    return {
        node.attr
        for node in ast.walk(_runtime_tree())
        if isinstance(node, ast.Attribute) and _is_provider(node.value)
    }


def test_every_hook_the_runtime_calls_is_declared_and_documented() -> None:
    called = hooks_called_by_runtime()
    assert {"init", "serve_exports", "health", "shutdown", "on_config_update"} <= called
    assert {"on_link_as_source", "on_link_deleted_as_target"} <= called
    for hook in called:
        method = getattr(Provider, hook, None)
        assert method is not None, f"the runtime calls {hook!r}, which Provider does not declare"
        assert inspect.iscoroutinefunction(method), hook
        assert inspect.getdoc(method), f"Provider.{hook} has no docstring"


def test_the_runtime_looks_up_no_hook_by_name() -> None:
    for node in ast.walk(_runtime_tree()):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and node.args
        ):
            assert not _is_provider(node.args[0]), ast.unparse(node)


def test_default_serve_exports_serves_nothing() -> None:
    # The default touches nothing of the context: a provider that serves no exports.
    ctx = cast(ProviderContext, object())
    assert asyncio.run(Provider().serve_exports(ctx)) is None
