"""Import layers: no module imports a higher layer, no import cycle between packages.

Every module's imports are read with ``ast``: at module level, inside functions and under
``if TYPE_CHECKING:`` (a type-only import still ties a lower module to a higher one's API).
A module's layer is the one of the longest name in ``LAYERS`` it falls under; a module may
import its own unit (package or module), anything in a lower layer, and, in a layer marked
side by side, nothing of its siblings.

Today's exceptions are listed in ``KNOWN_VIOLATIONS``, each with why it is there; they are to
be fixed, so an entry that no longer happens fails ``test_known_violations_still_happen``
(delete it then).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "chatbridge"


@dataclass(frozen=True)
class Layer:
    name: str
    units: tuple[str, ...]
    side_by_side: bool = False
    """Units of this layer may not import each other."""


LAYERS = (
    # Standard library and pydantic only: the agent SDK stands on it (tests/test_sdk_standalone.py).
    Layer(
        "ground floor",
        (
            "chatbridge",
            "chatbridge.errors",
            "chatbridge.clock",
            "chatbridge.ids",
            "chatbridge.logs",
            "chatbridge.backoff",
            "chatbridge.retry",
            "chatbridge.protocol",
            "chatbridge.models",
            "chatbridge.signing",
            "chatbridge.policies",
        ),
    ),
    # The agent SDK: what agent authors import; nothing of the bridge.
    Layer("agent SDK", ("chatbridge.agent",)),
    # The bridge's settings and process-wide helpers (pydantic-settings, limits, prometheus).
    Layer(
        "settings",
        (
            "chatbridge.config",
            "chatbridge.config_errors",
            "chatbridge.transport_kinds",
            "chatbridge.ratelimit",
            "chatbridge.gc_policy",
            # operator roles, audit rules and password hashing (argon2): no I/O
            "chatbridge.operators",
        ),
    ),
    # Durable state (the database) and what replicas tell each other (Redis or nothing).
    Layer("state", ("chatbridge.store", "chatbridge.cluster"), side_by_side=True),
    # Over the store: people, phones, thread links, call transcription; the metrics.
    Layer(
        "records", ("chatbridge.crm", "chatbridge.metrics", "chatbridge.media"), side_by_side=True
    ),
    # The two edges of the bridge: customer channels and agent transports.
    Layer("edges", ("chatbridge.channels", "chatbridge.transports"), side_by_side=True),
    # Inbound -> turn -> agent -> delivery.
    Layer("pipeline", ("chatbridge.pipeline",)),
    # The web chat's sessions and live sockets; the console's static files.
    Layer("web chat", ("chatbridge.webchat", "chatbridge.console"), side_by_side=True),
    Layer("api", ("chatbridge.api",)),
    # Fakes and mock servers (the demo, the bench and the tests run them).
    Layer("testing", ("chatbridge.testing",)),
    Layer(
        "tools",
        ("chatbridge.bench", "chatbridge.demo", "chatbridge.docs_gen", "chatbridge.check"),
        side_by_side=True,
    ),
    Layer("cli", ("chatbridge.cli",)),
    Layer("main", ("chatbridge.__main__",)),
)

# (importing module, imported module): imports that climb a layer or cross side by side
# today, each with a comment saying why and which package's rework removes it. None now:
# keep it that way (move the code to the right floor instead of adding an entry).
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_in(name: str, is_package: bool, source: str, modules: set[str]) -> list[Import]:
    """The ``chatbridge`` modules that module ``name`` (whose text is ``source``) imports,
    wherever in the text the import is."""
    tree = ast.parse(source, name)
    here = name if is_package else name.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            # ``from chatbridge import clock`` imports the module chatbridge.clock
            submodules = [f"{source}.{a.name}" for a in node.names]
            named = [m for m in submodules if m in modules]
            if not named or len(named) < len(submodules):
                found.append(Import(name, source, node.lineno))
            found += [Import(name, m, node.lineno) for m in named]
    return [i for i in found if i.imported.partition(".")[0] == "chatbridge"]


def unit_of(module: str) -> tuple[int, str]:
    """The layer number and unit of ``module`` (its longest name in ``LAYERS``)."""
    best: tuple[int, str] | None = None
    for number, layer in enumerate(LAYERS):
        for unit in layer.units:
            if (module == unit or module.startswith(unit + ".")) and (
                best is None or len(unit) > len(best[1])
            ):
                best = (number, unit)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best


def all_imports() -> list[Import]:
    modules = package_modules()
    names = set(modules)
    return [
        imp
        for name, path in modules.items()
        for imp in imports_in(
            name, path.name == "__init__.py", path.read_text(encoding="utf-8"), names
        )
    ]


def violations() -> dict[tuple[str, str], Import]:
    """Imports that climb a layer or cross between side-by-side units."""
    found = {}
    for imp in all_imports():
        (low, unit), (high, target) = unit_of(imp.importer), unit_of(imp.imported)
        if unit == target:
            continue
        if high > low or (high == low and LAYERS[low].side_by_side):
            found[(imp.importer, imp.imported)] = imp
    return found


def unit_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def test_every_module_has_a_layer() -> None:
    for name in package_modules():
        unit_of(name)


def test_no_import_climbs_a_layer() -> None:
    found = violations()
    new = [
        f"{imp.importer}:{imp.line} imports {imp.imported} "
        f"({LAYERS[unit_of(imp.importer)[0]].name} -> {LAYERS[unit_of(imp.imported)[0]].name})"
        for key, imp in sorted(found.items())
        if key not in KNOWN_VIOLATIONS
    ]
    assert not new, "imports that climb a layer:\n" + "\n".join(new)


def test_known_violations_still_happen() -> None:
    fixed = sorted(KNOWN_VIOLATIONS - set(violations()))
    assert not fixed, f"fixed, delete from KNOWN_VIOLATIONS: {fixed}"


def test_the_sdk_imports_only_the_ground_floor() -> None:
    sdk = LAYERS.index(next(layer for layer in LAYERS if layer.name == "agent SDK"))
    wrong = [
        f"{imp.importer}:{imp.line} imports {imp.imported}"
        for imp in all_imports()
        if unit_of(imp.importer)[0] == sdk and unit_of(imp.imported)[0] not in (0, sdk)
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_packages() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for imp in all_imports():
        if (imp.importer, imp.imported) in KNOWN_VIOLATIONS:
            continue
        unit, target = unit_of(imp.importer)[1], unit_of(imp.imported)[1]
        if unit != target:
            edges[unit].add(target)
    assert unit_cycles(edges) == []


def test_the_checks_can_fail() -> None:
    """The parser sees relative imports and imports in functions; a climb and a cycle are
    found."""
    source = (
        "from __future__ import annotations\n"
        "from .. import ids\n"
        "def later():\n"
        "    from chatbridge.api.app import create_app\n"
    )
    modules = {"chatbridge.ids", "chatbridge.store.example"}
    found = imports_in("chatbridge.store.example", False, source, modules)
    assert [(i.imported, i.line) for i in found] == [
        ("chatbridge.ids", 2),
        ("chatbridge.api.app", 4),
    ]
    assert unit_of("chatbridge.api.app")[0] > unit_of("chatbridge.store.example")[0]
    assert unit_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
