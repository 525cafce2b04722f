"""Reference documents generated from the code, so that they cannot drift from it.

- ``docs/configuration.md``: every setting of the bridge (``chatbridge.config.Settings``), of
  each channel (``CHATBRIDGE_<CHANNEL>_*``) and of WhatsApp and calls (``CHATBRIDGE_COMMS_*``),
  with its environment variables, type, default and description.
- ``docs/agent-protocol.schema.json``: the agent protocol's JSON Schema, as
  ``GET /api/protocol/schema.json`` serves it.

``chatbridge docs write`` (or ``python -m chatbridge.docs_gen``) writes them into ``docs/``;
``chatbridge docs check`` says which are out of date. The docs check test
(``tests/docs/test_docs_check.py``) fails the build when a checked-in copy differs.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import annotated_types
import typer
from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, NoDecode

CONFIGURATION = "configuration.md"
PROTOCOL_SCHEMA = "agent-protocol.schema.json"

_HEADING = re.compile(r"#\s*---\s*(.+?)\s*-*\s*$")


# --------------------------------------------------------------------------------------
# One setting
# --------------------------------------------------------------------------------------


def env_names(
    model: type[BaseSettings], name: str, field: FieldInfo, prefix: str | None = None
) -> list[str]:
    """The environment variables ``field`` is read from (upper case, as written in docs);
    ``prefix`` for a model whose prefix is given when it is read (a channel's)."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice).upper() for choice in alias.choices if isinstance(choice, str)]
    if isinstance(alias, str):
        return [alias.upper()]
    if prefix is None:
        prefix = str(model.model_config.get("env_prefix", ""))
    return [f"{prefix}{name}".upper()]


def type_text(annotation: Any) -> str:
    """A reader's name for a setting's type: ``integer``, ``JSON list of text`` …"""
    origin = get_origin(annotation)
    args = [a for a in get_args(annotation)]
    if origin in (Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        inner = type_text(present[0]) if len(present) == 1 else " or ".join(map(type_text, present))
        return f"{inner}, optional" if len(present) < len(args) else inner
    if origin is Literal:
        return " | ".join(f"`{a}`" for a in args)
    if origin is list:
        item = args[0] if args else Any
        if inspect.isclass(item) and issubclass(item, BaseModel):
            return "JSON list of objects"
        return f"JSON list of {_plural(type_text(item))}"
    if origin is dict:
        return "JSON object"
    if get_origin(annotation) is not None and hasattr(annotation, "__metadata__"):
        return type_text(args[0])
    names = {str: "text", int: "integer", float: "number", bool: "boolean"}
    if annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", str(annotation))


def _plural(text: str) -> str:
    return {"integer": "integers", "number": "numbers", "boolean": "booleans"}.get(text, text)


def limits_text(field: FieldInfo) -> str:
    """The field's bounds (``≥ 1``, ``at most 200 characters``), comma-separated."""
    out: list[str] = []
    lengths = [
        m for m in field.metadata if isinstance(m, annotated_types.MinLen | annotated_types.MaxLen)
    ]
    if len(lengths) == 2 and getattr(lengths[0], "min_length", None) == getattr(
        lengths[1], "max_length", None
    ):
        return f"exactly {lengths[1].max_length} characters"  # type: ignore[union-attr]
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            out.append(f"≥ {_number(item.ge)}")
        elif isinstance(item, annotated_types.Gt):
            out.append(f"> {_number(item.gt)}")
        elif isinstance(item, annotated_types.Le):
            out.append(f"≤ {_number(item.le)}")
        elif isinstance(item, annotated_types.Lt):
            out.append(f"< {_number(item.lt)}")
        elif isinstance(item, annotated_types.MinLen):
            out.append(
                "not empty" if item.min_length == 1 else f"at least {item.min_length} characters"
            )
        elif isinstance(item, annotated_types.MaxLen):
            out.append(f"at most {item.max_length} characters")
    return ", ".join(out)


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def default_text(name: str, field: FieldInfo) -> str:
    """The default as it would be written in the environment; ``unset`` for none, and a
    word for one computed per process (a factory that gives a new value each call)."""
    if field.default_factory is not None:
        factory: Callable[[], Any] = field.default_factory  # type: ignore[assignment]
        first, second = factory(), factory()
        if first != second:
            return "computed at start-up"
        value = first
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        text = f"`{_number(value)}`"
        if name.endswith("_bytes") and isinstance(value, int) and value >= 1024:
            text += f" ({_size(value)})"
        return text
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return f"`{json.dumps(value, separators=(', ', ': '))}`"


def _size(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f"{value // size} {unit}"
    return f"{value} bytes"


def _cell(text: str) -> str:
    """``text`` fit for one table cell: one line, pipes escaped, and ``<…>`` outside code
    spans shown as written rather than taken for HTML."""
    parts = " ".join(text.split()).split("`")
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", parts[i])
    return "`".join(parts).replace("|", "\\|")


def rows(
    model: type[BaseSettings], names: list[str] | None = None, prefix: str | None = None
) -> list[str]:
    """One Markdown table row per field of ``model`` (or of ``names``, in that order)."""
    out: list[str] = []
    for name in names if names is not None else list(model.model_fields):
        field = model.model_fields[name]
        variables = " / ".join(f"`{v}`" for v in env_names(model, name, field, prefix))
        kind = type_text(field.annotation)
        if NoDecode in field.metadata:  # read as text, split by the model's own validator
            kind = "comma-separated list"
        limits = limits_text(field)
        if limits:
            kind += f"; {limits}"
        # A missing description shows as such; tests/docs refuses it.
        description = field.description or "(undocumented)"
        default = default_text(name, field)
        if NoDecode in field.metadata and default == "`[]`":
            default = "empty"
        out.append(f"| {variables} | {_cell(kind)} | {_cell(default)} | {_cell(description)} |")
    return out


_TABLE_HEAD = ["| variable | type | default | what it does |", "|---|---|---|---|"]


# --------------------------------------------------------------------------------------
# Sections, as the source groups the fields
# --------------------------------------------------------------------------------------


def source_sections(model: type[BaseModel]) -> list[tuple[str, list[str]]]:
    """``model``'s fields grouped under the ``# --- heading ---`` comments of its source, in
    source order (fields before the first heading are under ``""``)."""
    try:
        source = textwrap.dedent(inspect.getsource(model))
    except (OSError, TypeError):
        return [("", list(model.model_fields))]
    headings = {
        number: m.group(1).rstrip(" -")
        for number, line in enumerate(source.splitlines(), start=1)
        if (m := _HEADING.match(line.strip()))
    }
    tree = ast.parse(source)
    cls = tree.body[0]
    assert isinstance(cls, ast.ClassDef)
    sections: list[tuple[str, list[str]]] = [("", [])]
    marks = sorted(headings)
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        if name not in model.model_fields:
            continue
        title = next((headings[n] for n in reversed(marks) if n < node.lineno), "")
        if title != sections[-1][0]:
            sections.append((title, []))
        sections[-1][1].append(name)
    listed = {n for _, names in sections for n in names}
    rest = [n for n in model.model_fields if n not in listed]  # inherited, or unreadable
    if rest:
        sections.append(("other", rest))
    return [(title, names) for title, names in sections if names]


def _title(text: str) -> str:
    text = text.strip().rstrip(":").replace("``", "`")
    return text[:1].upper() + text[1:] if text else "General"


# --------------------------------------------------------------------------------------
# The documents
# --------------------------------------------------------------------------------------


def configuration_markdown() -> str:
    """``docs/configuration.md``: every setting, generated from the settings models."""
    from chatbridge.channels import registry
    from chatbridge.channels.base import ChannelSettings
    from chatbridge.config import Settings
    from chatbridge.crm.settings import CommsSettings

    lines = [
        "<!-- Generated from the settings models by `chatbridge docs write`: do not edit by",
        "     hand (tests/docs/test_docs_check.py fails when it is out of date). -->",
        "",
        "# Configuration reference",
        "",
        "Every setting the bridge reads, generated from its settings models (`Settings` in",
        "`chatbridge/config.py`, each channel's `SETTINGS`, `CommsSettings` in",
        "`chatbridge/crm/settings.py`, the pull agent's `PullConfig`). Each is read from the",
        "environment or from a `.env` file in the working directory (the pull agent: the",
        "environment only); the environment wins. Lists and objects are written as JSON",
        '(`CHATBRIDGE_AGENT_TOKENS=\'{"sales-bot": "…"}\'`), booleans as `true` / `false`,',
        "sizes in bytes and durations in seconds. Where two variables are listed, either",
        "works: the first is the original Chatwoot bridge's own name, kept so an existing",
        "`.env` keeps working. An invalid value stops the bridge at start-up with a message",
        "naming the variable.",
        "",
        "The routes themselves (`INBOX_AGENT_MAPPINGS`: which agent answers which inbox, its",
        "transport and policies) are described in the [README](../README.md#running-it-for-real)",
        "and [policies](policies.md); they can also be managed at run time through the",
        "management API and the console.",
        "",
        "Contents: [the bridge](#the-bridge) · [channels](#channels) ·",
        "[the pull agent](#the-pull-agent) · [the broadcast command](#the-broadcast-command) ·",
        "[WhatsApp and calls](#whatsapp-and-calls).",
        "",
        "## The bridge",
        "",
    ]
    for title, names in source_sections(Settings):
        lines += [f"### {_title(title)}", "", *_TABLE_HEAD, *rows(Settings, names), ""]

    lines += [
        "## Channels",
        "",
        "Each channel reads its own settings from `CHATBRIDGE_<CHANNEL>_*`.",
        "",
    ]
    for name in sorted(registry.DEFAULT_CHANNELS):
        model = registry.settings_model(name)
        if name not in registry.WEBHOOK_CHANNELS and model is ChannelSettings:
            continue
        prefix = registry.env_prefix(name)
        lines += [f"### {name} (`{prefix}*`)", "", *_TABLE_HEAD, *rows(model, prefix=prefix), ""]

    lines += [
        "## The pull agent",
        "",
        "`chatbridge pull-agent` (and `run_pull_agent` in the SDK) polls a bridge for turns over",
        "HTTP. It reads its options from flags first, then from these variables (the web chat",
        "plugin's own names where it had one).",
        "",
        *_TABLE_HEAD,
        *pull_agent_rows(),
        "",
    ]
    lines += [
        "## The broadcast command",
        "",
        "`chatbridge broadcast …` calls a running bridge's API; besides its flags it reads:",
        "",
        *_TABLE_HEAD,
        *broadcast_rows(),
        "",
    ]
    lines += [
        "## WhatsApp and calls",
        "",
        "The WhatsApp provider, its credentials, broadcasts and call transcription",
        "(`CHATBRIDGE_COMMS_*`). These are the defaults: changes saved through",
        "`PATCH /api/comms/settings` (the console's Settings screen) are stored in the database",
        "and win over the environment. Secrets are write-only: the API says whether they are",
        "set, never what they are.",
        "",
    ]
    for title, names in source_sections(CommsSettings):
        if title:
            lines += [f"### {_title(title)}", ""]
        lines += [*_TABLE_HEAD, *rows(CommsSettings, names), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _attribute_docs(cls: type) -> dict[str, str]:
    """The ``Attributes:`` section of ``cls``'s docstring: name → text (one line each)."""
    doc = inspect.getdoc(cls) or ""
    _, _, section = doc.partition("Attributes:")
    out: dict[str, str] = {}
    name = ""
    for line in section.splitlines():
        m = re.match(r"^    (\w+): (.*)$", line)
        if m:
            name, out[m.group(1)] = m.group(1), m.group(2)
        elif line.startswith("        ") and name:
            out[name] += " " + line.strip()
        elif line.strip():
            break
    # the variable is its own column: "(``WEB_CHAT_TIMEOUT``)" at the end says it again
    return {
        k: re.sub(r"\s*\(``[A-Z_]+``\)\.?$", "", v).rstrip(".").replace("``", "`")
        for k, v in out.items()
    }


def pull_agent_rows() -> list[str]:
    """The pull agent's options (``chatbridge pull-agent``): its flag, its variable, type,
    default and description, from ``chatbridge.agent.pull.config``."""
    import dataclasses

    from chatbridge.agent.pull.config import OPTIONS, PullConfig

    fields = {f.name: f for f in dataclasses.fields(PullConfig)}
    hints = get_type_hints(PullConfig)
    texts = _attribute_docs(PullConfig)
    out = []
    for name, (flag, variable) in OPTIONS.items():
        field = fields[name]
        where = f"`{variable}` / `{flag}`" if variable else f"`{flag}` (no variable)"
        default = "unset" if field.default is None else f"`{_number(field.default)}`"
        kind = type_text(hints[name])
        text = texts.get(name) or "(undocumented)"
        out.append(f"| {where} | {_cell(kind)} | {_cell(default)} | {_cell(text)} |")
    return out


def broadcast_rows() -> list[str]:
    """The variables ``chatbridge broadcast`` reads (its options' ``envvar``), once each."""
    from chatbridge.broadcast_cli import broadcast_app

    command = typer.main.get_command(broadcast_app)
    seen: dict[str, str] = {}
    for sub in getattr(command, "commands", {}).values():
        for param in sub.params:
            variables = [param.envvar] if isinstance(param.envvar, str) else param.envvar or []
            for variable in variables:
                if variable in seen:
                    continue
                default = "unset" if param.default is None else f"`{param.default}`"
                help_text = getattr(param, "help", None) or "(undocumented)"
                seen[variable] = (
                    f"| `{variable}` / `{param.opts[0]}` | text | {_cell(default)} "
                    f"| {_cell(help_text)} |"
                )
    return list(seen.values())


def protocol_schema_json() -> str:
    """``docs/agent-protocol.schema.json``: the agent protocol's JSON Schema, pretty-printed."""
    from chatbridge.protocol import protocol_json_schema

    return json.dumps(protocol_json_schema(), indent=2, ensure_ascii=False) + "\n"


def generated() -> dict[str, str]:
    """Every generated document: its name under ``docs/`` → its text."""
    return {CONFIGURATION: configuration_markdown(), PROTOCOL_SCHEMA: protocol_schema_json()}


def stale(docs: Path) -> Iterator[str]:
    """The names of the generated documents in ``docs`` that are missing or out of date."""
    for name, text in generated().items():
        path = docs / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            yield name


def write(docs: Path) -> list[str]:
    """Write every generated document that changed into ``docs``; their names."""
    changed = list(stale(docs))
    texts = generated()
    for name in changed:
        (docs / name).write_text(texts[name], encoding="utf-8")
    return changed


docs_app = typer.Typer(
    help="The reference documents generated from the code (docs/configuration.md, "
    "docs/agent-protocol.schema.json).",
    no_args_is_help=True,
)

_DOCS_DIR = typer.Argument(help="the docs folder of a checkout")


@docs_app.command("write")
def write_command(docs: Annotated[Path, _DOCS_DIR] = Path("docs")) -> None:
    """Write the generated documents that changed into DOCS."""
    raise typer.Exit(main([str(docs)]))


@docs_app.command("check")
def check_command(docs: Annotated[Path, _DOCS_DIR] = Path("docs")) -> None:
    """Exit 1, naming them, when generated documents in DOCS are out of date."""
    raise typer.Exit(main(["check", str(docs)]))


@docs_app.command("config")
def config_command() -> None:
    """Print the configuration reference (Markdown)."""
    sys.stdout.write(configuration_markdown())


@docs_app.command("schema")
def schema_command() -> None:
    """Print the agent protocol's JSON Schema."""
    sys.stdout.write(protocol_schema_json())


def main(argv: list[str] | None = None) -> int:
    """``python -m chatbridge.docs_gen [check] [DOCS_DIR]``: write (or check) the documents."""
    args = list(sys.argv[1:] if argv is None else argv)
    check = bool(args) and args[0] == "check"
    if check:
        args.pop(0)
    docs = Path(args[0]) if args else Path("docs")
    if check:
        out = list(stale(docs))
        for name in out:
            print(f"{docs / name} is out of date: run `chatbridge docs write`", file=sys.stderr)
        return 1 if out else 0
    for name in write(docs):
        print(f"wrote {docs / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
