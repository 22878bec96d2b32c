"""A feature set's code version: what can change its values, and nothing else.

The version hashes the parsed code (Python's `ast`), not the text, of the set's function with
its declaration (the decorator) and of everything at the top level of its own module that the
function uses, followed name by name: helper functions and classes, constants, and the imports
that bind the names used. Comments, docstrings, blank lines and formatting are not in the
parsed code, so editing them keeps the version; so does editing a helper the set does not use.
Code in other modules (a shared package of helpers, the libraries) is not followed: declare
`version="..."` by hand to decide yourself when a set's days turn stale.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from collections.abc import Callable, Iterator


def code_version(function: Callable) -> str:
    """16 hex digits of the SHA-256 of the set's parsed code (see the module's docstring)."""
    try:
        module_source = "".join(inspect.findsource(function)[0])  # the whole file's lines
    except (OSError, TypeError):  # defined interactively: the function alone, if it can
        return _function_only(function)
    module = ast.parse(module_source)
    statements = _used_statements(module, function.__name__)
    if statements is None:  # not at the top level of its module (a factory made it)
        return _function_only(function)
    return _digest(statements)


def text_version(function: Callable) -> str:
    """The version this project gave before it parsed the code: a hash of the module's text.
    Stored days tagged with it are current while the file's text is unchanged."""
    module = inspect.getmodule(function)
    try:
        source = inspect.getsource(module) if module else inspect.getsource(function)
    except (OSError, TypeError):
        source = repr(function.__code__.co_code)
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _function_only(function: Callable) -> str:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError):
        return hashlib.sha256(function.__code__.co_code).hexdigest()[:16]
    return _digest(tree.body)


def _used_statements(module: ast.Module, name: str) -> list[ast.stmt] | None:
    """The top-level statements that bind `name` and, transitively, the names they use."""
    bound: dict[str, list[ast.stmt]] = {}
    for statement in module.body:
        for bound_name in _names_bound(statement):
            bound.setdefault(bound_name, []).append(statement)
    if name not in bound:
        return None
    chosen: list[ast.stmt] = []
    pending, seen = [name], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for statement in bound.get(current, []):
            if statement not in chosen:
                chosen.append(statement)
                pending.extend(_names_used(statement))
    return sorted(chosen, key=lambda statement: statement.lineno)  # the file's order


def _names_bound(statement: ast.stmt) -> Iterator[str]:
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        yield statement.name
    elif isinstance(statement, ast.Import | ast.ImportFrom):
        for alias in statement.names:
            yield (alias.asname or alias.name).split(".")[0]
    elif isinstance(statement, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        for target in targets:
            for node in ast.walk(target):
                if isinstance(node, ast.Name):
                    yield node.id


def _names_used(statement: ast.stmt) -> set[str]:
    return {node.id for node in ast.walk(statement) if isinstance(node, ast.Name)}


def _digest(statements: list[ast.stmt]) -> str:
    parts = [ast.dump(_normalised(s), annotate_fields=False) for s in statements]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _normalised(statement: ast.stmt) -> ast.stmt:
    """A copy of `statement` whose functions and classes have no docstring, and whose calls
    have no `stage="close"` keyword: before sets declared a stage, every set saw what
    `close` shows, so a set that now declares it computes what it always did, and its
    stored days stay current."""
    copy = ast.parse(ast.unparse(statement)).body[0]
    for node in ast.walk(copy):
        if isinstance(node, ast.Call):
            node.keywords = [k for k in node.keywords if not _is_close_stage(k)]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return copy


def _is_close_stage(keyword: ast.keyword) -> bool:
    value = keyword.value
    return keyword.arg == "stage" and isinstance(value, ast.Constant) and value.value == "close"
