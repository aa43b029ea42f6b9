"""Nothing but brain/store/keys.py spells a Redis key: every other module of the brain, the bots, the trainer and
the benchmarks builds a key by calling it, so that the layout can change in one place and a /forget can know
every key there is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
KEY_MODULE = ROOT / "brain" / "store" / "keys.py"
SCANNED = ("brain", "bot", "trainer", "bench")
# a key's namespace and first segment, as the key module spells it: "oc:profile", "oc:users", ...
KEY_START = re.compile(r"(?<![\w.])oc:([\w-]*)")


def key_prefixes() -> set[str]:
    """The first segment of every key the key module spells ("profile", "registry", ...)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(KEY_MODULE.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = KEY_START.match(node.value)
            if match and match.group(1):
                found.add(match.group(1))
    return found


def docstrings(tree: ast.AST) -> set[int]:
    """The ids of the string constants that stand alone as statements (docstrings): prose may name a key."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }


def spelled_keys(source: str, prefixes: set[str]) -> list[tuple[int, str]]:
    """(line, literal) of each string literal, or piece of an f-string, that spells a key: one of the key module's
    prefixes, or the bare namespace that an f-string completes."""
    tree = ast.parse(source)
    prose = docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in prose:
            continue
        for match in KEY_START.finditer(node.value):
            if match.group(1) in prefixes or not match.group(1):
                found.append((node.lineno, node.value))
                break
    return sorted(found)


def test_the_key_module_is_where_the_keys_are_spelled():
    prefixes = key_prefixes()
    assert {"profile", "turns", "facts", "users", "tombstones", "registry", "runs"} <= prefixes


def test_no_other_module_spells_a_key():
    prefixes = key_prefixes()
    offending = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == KEY_MODULE:
                continue
            for line, literal in spelled_keys(path.read_text(), prefixes):
                offending.append(f"{path.relative_to(ROOT)}:{line}: {literal!r}")
    assert not offending, "a Redis key is spelled outside brain/store/keys.py:\n" + "\n".join(offending)


def test_the_check_finds_a_key_in_a_literal_or_an_f_string_and_not_in_prose():
    source = '''
"""Module prose may name ``oc:profile:{u}``."""
def f(r, user, name):
    """So may a function's."""
    r.get(f"oc:profile:{{{user}}}")
    r.get("oc:users")
    r.get(f"oc:{name}")
    return "doc:users"
'''
    assert [line for line, _ in spelled_keys(source, key_prefixes())] == [5, 6, 7]
