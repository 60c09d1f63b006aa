"""Every error PipeTwin raises on purpose speaks Chinese too: each ``raise <TwinError kind>(...)``
(and any other place one is made, ``bad = InputError(...)``) in the packages gives ``zh=`` with
Chinese text (the API answers in the client's language, the CLI prints both). Read from the
source (AST), so it is fast and names each offender.

One case per package, so each package's state is visible on its own.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from twin import errors

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("twin", "ingest", "analysis", "tiles", "exchange", "live", "documents", "api")
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def _name(node: ast.expr) -> str | None:
    """The last name of ``Foo`` or ``errors.Foo``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _trees() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text(encoding="utf-8"), filename=str(p))
            for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _error_kinds(trees: dict[Path, ast.Module]) -> set[str]:
    """Names of TwinError and of every class derived from it in the packages (to a fixpoint)."""
    kinds = {name for name, obj in vars(errors).items()
             if isinstance(obj, type) and issubclass(obj, errors.TwinError)}
    classes = [node for tree in trees.values() for node in ast.walk(tree)
               if isinstance(node, ast.ClassDef)]
    grew = True
    while grew:
        grew = False
        for cls in classes:
            if cls.name not in kinds and any(_name(b) in kinds for b in cls.bases):
                kinds.add(cls.name)
                grew = True
    return kinds


def _chinese(value: ast.expr) -> bool:
    """A string or f-string literal (or a conditional of them) with at least one CJK character;
    a variable (``zh=zh``: a helper passing on its caller's text) is taken as given."""
    if isinstance(value, ast.IfExp):
        return _chinese(value.body) and _chinese(value.orelse)
    if isinstance(value, ast.Name | ast.Attribute | ast.Subscript | ast.Call):
        return True
    texts = [n.value for n in ast.walk(value) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return any(CJK.search(t) for t in texts)


def _offenders(package: str, trees: dict[Path, ast.Module], kinds: set[str]) -> Iterator[str]:
    for path, tree in trees.items():
        if path.relative_to(ROOT).parts[0] != package:
            continue
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and _name(call.func) in kinds):
                continue
            zh = next((k.value for k in call.keywords if k.arg == "zh"), None)
            if zh is None or not _chinese(zh):
                yield f"{path.relative_to(ROOT)}:{call.lineno} {_name(call.func)}"


@pytest.fixture(scope="module")
def source() -> tuple[dict[Path, ast.Module], set[str]]:
    trees = _trees()
    return trees, _error_kinds(trees)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_raise_speaks_chinese(package: str, source) -> None:
    trees, kinds = source
    offenders = list(_offenders(package, trees, kinds))
    assert not offenders, f"{len(offenders)} raise(s) without zh= in Chinese:\n" + "\n".join(offenders)


def test_the_check_finds_a_missing_translation(tmp_path: Path) -> None:
    """The checker itself: a raise without zh=, one with English zh= of a local subclass, and an
    error made without zh= are found; the ones in Chinese are not."""
    code = ("from twin.errors import InputError\n"
            "class Stale(InputError):\n    pass\n"
            "def f(x):\n"
            "    if x == 1:\n        raise InputError('bad', zh='输入无效')\n"
            "    if x == 2:\n        raise InputError('bad')\n"
            "    if x == 3:\n        raise Stale('old', zh='old')\n"
            "    if x == 4:\n        raise Stale(f'old {x}', zh=f'旧的 {x}')\n"
            "    bad = InputError('made, raised later')\n"
            "    raise ValueError('not ours')\n")
    tree = ast.parse(code)
    fake = ROOT / "twin" / "_fake.py"
    trees = {fake: tree}
    found = list(_offenders("twin", trees, _error_kinds(trees)))
    assert sorted((int(f.split(" ")[0].rsplit(":", 1)[1]), f.split(" ", 1)[1]) for f in found) == [
        (8, "InputError"), (10, "Stale"), (13, "InputError")]


VALIDATORS = {"field_validator", "model_validator", "AfterValidator", "BeforeValidator", "PlainValidator",
              "WrapValidator"}


def _validator_english(tree: ast.Module) -> list[int]:
    """Lines of ``raise ValueError(...)`` in the pydantic validators of a module (and the functions
    they call by name, to a fixpoint): pydantic would answer them in English only in a 422; a
    validator raises ``api.errors.invalid(en, zh)``."""
    functions = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
    chosen = {f.name for f in functions.values()
              if any(_name(d.func if isinstance(d, ast.Call) else d) in VALIDATORS for d in f.decorator_list)}
    chosen |= {a.id for c in ast.walk(tree) if isinstance(c, ast.Call) and _name(c.func) in VALIDATORS
               for a in c.args if isinstance(a, ast.Name)}
    grew = True
    while grew:
        called = {_name(c.func) for name in chosen if name in functions
                  for c in ast.walk(functions[name]) if isinstance(c, ast.Call)}
        grew = not (called & set(functions)) <= chosen
        chosen |= called & set(functions)
    return sorted(r.lineno for name in chosen if name in functions for r in ast.walk(functions[name])
                  if isinstance(r, ast.Raise) and isinstance(r.exc, ast.Call) and _name(r.exc.func) == "ValueError")


def test_validators_speak_chinese_too() -> None:
    found = [f"{p.relative_to(ROOT)}:{line}" for p in sorted((ROOT / "api").rglob("*.py"))
             for line in _validator_english(ast.parse(p.read_text(encoding="utf-8")))]
    assert found == [], "validators raising ValueError (English only in a 422): " + ", ".join(found)
    code = ("from pydantic import AfterValidator, model_validator\n"
            "def _deep(v):\n    raise ValueError('deep')\n"
            "def _check(v):\n    return _deep(v)\n"
            "T = Annotated[int, AfterValidator(_check)]\n"
            "class M:\n    @model_validator(mode='after')\n    def _v(self):\n        raise ValueError('here')\n"
            "def unrelated():\n    raise ValueError('not a validator')\n")
    assert _validator_english(ast.parse(code)) == [3, 10]
