"""The docs check: the README and docs/ stand alone and say what the code does.

It fails the build on
- a broken relative link in README.md or docs/ (a missing file, or a ``#anchor`` that no heading
  of the target makes), or a link that leaves the repository;
- any mention of the developers' private ``shared/`` folder (``shared/contracts/…``);
- a ``docs/…`` file named in the package's source that does not exist;
- an undocumented setting: docs/configuration.md is generated from the settings models
  (``chatbridge docs write``) and must be what they generate now, every setting described;
- a schema drift: docs/agent-protocol.schema.json must be the schema the Python models make
  (and the TypeScript package's copy, where it has one, the same schema);
- a protocol message that docs/agent-protocol.md does not document.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest

from chatbridge import docs_gen

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
MARKDOWN = sorted([ROOT / "README.md", *DOCS.rglob("*.md")])

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+\1")
# [text](target "title") and ![alt](target); the target may be <wrapped>
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_HTML_REF = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)=["']([^"']+)["']""", re.I)
_HTML_ID = re.compile(r"""<[a-z]+\b[^>]*?\b(?:id|name)=["']([^"']+)["']""", re.I)
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of ``path`` outside fenced code blocks, with inline code removed."""
    out: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, _INLINE_CODE.sub("", line)))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    kept = "".join(c for c in text if c in "-_ " or unicodedata.category(c)[0] in ("L", "N", "M"))
    return kept.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every ``#anchor`` a link into ``path`` may use: its headings' slugs (a repeated one
    numbered as GitHub does) and explicit ``id``/``name`` attributes."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        found.update(_HTML_ID.findall(line))
        m = _HEADING.match(line)
        if m:
            base = slug(m.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def links(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for number, line in prose_lines(path):
        for pattern in (_LINK, _REF_DEF, _HTML_REF):
            out += [(number, target) for target in pattern.findall(line)]
    return out


def link_problem(source: Path, target: str) -> str | None:
    """What is wrong with link ``target`` written in ``source``, or None."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto: …
        return None
    if "shared/contracts" in target or re.search(r"(^|/)shared(/|$)", target):
        return "points into the developers' private shared/ folder"
    where, _, anchor = target.partition("#")
    file = (source.parent / where).resolve() if where else source
    if not file.is_relative_to(ROOT):
        return "leaves the repository"
    if not file.exists():
        return f"{file.relative_to(ROOT)} does not exist"
    if anchor:
        if file.is_dir() or file.suffix != ".md":
            return f"#{anchor} on a file that is not Markdown"
        if anchor not in anchors(file):
            return f"no heading makes #{anchor} in {file.relative_to(ROOT)}"
    return None


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    broken = [
        f"{path.relative_to(ROOT)}:{number}: {target}: {problem}"
        for number, target in links(path)
        if (problem := link_problem(path, target))
    ]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_check_catches_what_it_must(tmp_path: Path) -> None:
    """The checker itself: a missing file, a missing anchor and a link into shared/ are
    caught; a good file, a good anchor and a web address pass."""
    readme = ROOT / "README.md"
    assert link_problem(readme, "docs/no-such-page.md") is not None
    assert link_problem(readme, "docs/agent-protocol.md#no-such-heading") is not None
    assert link_problem(readme, "../shared/contracts/chatwoot.md") is not None
    assert link_problem(readme, "shared/contracts/agent-protocol.md") is not None
    assert link_problem(readme, "../../etc/passwd") is not None
    assert link_problem(readme, "docs/configuration.md#the-bridge") is None
    assert link_problem(readme, "#configuration") is None
    assert link_problem(readme, "https://example.com/x#y") is None
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## The `serve` command: options!\n\n```\n# not a heading\n```\n")
    assert anchors(page) == {"title", "the-serve-command-options"}


def test_nothing_names_the_private_shared_folder() -> None:
    """No file of the project refers to the developers' ``shared/`` folder, which is not in
    the repository (the contracts it holds are restated in docs/)."""
    files = [
        *MARKDOWN,
        *(ROOT / "chatbridge").rglob("*.py"),
        *(ROOT / "chatbridge").rglob("*.html"),
        *(ROOT / "chatbridge").rglob("*.js"),
        ROOT / "pyproject.toml",
    ]
    offenders = [
        f"{f.relative_to(ROOT)}:{n}"
        for f in files
        if "static/swagger-ui" not in str(f) and "static/redoc" not in str(f)
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(r"shared/contracts|\.\./shared/|(?<![\w/])contracts/[\w-]+\.md", line)
    ]
    assert not offenders, "references to shared/ (not in the repository):\n" + "\n".join(offenders)


def test_docs_named_in_the_source_exist() -> None:
    """A ``docs/…`` page that a docstring or message sends the reader to exists."""
    missing = sorted(
        f"{f.relative_to(ROOT)}: {name}"
        for f in (ROOT / "chatbridge").rglob("*.py")
        for name in set(re.findall(r"(?<![\w/])docs/[\w/.-]+\.(?:md|json|yaml)", f.read_text()))
        if not (ROOT / name).exists()
    )
    assert not missing, "docs named in the source that do not exist:\n" + "\n".join(missing)


def test_configuration_reference_is_up_to_date() -> None:
    """Every setting is in docs/configuration.md as the settings models describe it now:
    after adding or changing a setting, run ``chatbridge docs write``."""
    expected = docs_gen.configuration_markdown()
    actual = (DOCS / docs_gen.CONFIGURATION).read_text(encoding="utf-8")
    assert actual == expected, (
        "docs/configuration.md is out of date: run `chatbridge docs write` "
        "(or `python -m chatbridge.docs_gen`)"
    )


def test_every_setting_is_described() -> None:
    from chatbridge.channels import registry
    from chatbridge.config import Settings
    from chatbridge.crm.settings import CommsSettings

    models = [Settings, CommsSettings, *map(registry.settings_model, registry.DEFAULT_CHANNELS)]
    undescribed = [
        f"{model.__name__}.{name}"
        for model in models
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert not undescribed, "settings without description= (the reference shows nothing):\n" + (
        "\n".join(undescribed)
    )
    assert "(undocumented)" not in docs_gen.configuration_markdown()


def test_settings_the_issue_names_are_documented() -> None:
    """The settings once missing from every document are in the reference."""
    text = (DOCS / docs_gen.CONFIGURATION).read_text(encoding="utf-8")
    for name in (
        "CHATBRIDGE_LOG_LEVEL",
        "CHATBRIDGE_AUTO_MIGRATE",
        "CHATBRIDGE_TURN_CONCURRENCY",
        "CHATBRIDGE_DELIVERY_CONCURRENCY",
        "CHATBRIDGE_WS_MAX_FRAME_BYTES",
        "CHATBRIDGE_RECONNECT_INITIAL_DELAY",
        "CHATBRIDGE_RECONNECT_MAX_DELAY",
        "CHATBRIDGE_CHATWOOT_TIMEOUT_SECONDS",
        "CHATBRIDGE_COMMS_PROVIDER",
        "CHATBRIDGE_COMMS_WAHA_API_KEY",
        "CHATBRIDGE_HTTP_INBOXES",
        "CHATBRIDGE_WHATSAPP_ALLOWED_NETWORKS",
        "INBOX_AGENT_MAPPINGS",
    ):
        assert f"`{name}`" in text, name


def test_protocol_schema_matches_the_models() -> None:
    """docs/agent-protocol.schema.json is the schema the Python models make: after a
    protocol change, run ``chatbridge docs write``."""
    checked_in = json.loads((DOCS / docs_gen.PROTOCOL_SCHEMA).read_text(encoding="utf-8"))
    assert checked_in == json.loads(docs_gen.protocol_schema_json()), (
        "docs/agent-protocol.schema.json differs from the protocol models: "
        "run `chatbridge docs write`"
    )


def test_typescript_package_schema_matches_the_models() -> None:
    """The TypeScript package's copy of the schema (its types are generated from it) is the
    one the Python models make, once the package has one."""
    copies = sorted((ROOT / "clients").glob("*/schema/*.json"))
    if not copies:
        pytest.skip("no client package with a schema copy")
    models = json.loads(docs_gen.protocol_schema_json())
    stale = [str(c.relative_to(ROOT)) for c in copies if json.loads(c.read_text()) != models]
    assert not stale, f"{stale} differ from the protocol models (regenerate the client's types)"


def test_agent_protocol_page_documents_every_message() -> None:
    """Every message type of the schema is named in docs/agent-protocol.md."""
    schema = json.loads(docs_gen.protocol_schema_json())
    types = {
        definition["properties"]["type"].get("const")
        for definition in schema["$defs"].values()
        if "type" in definition.get("properties", {})
    } - {None}
    assert len(types) > 20
    page = (DOCS / "agent-protocol.md").read_text(encoding="utf-8")
    missing = sorted(t for t in types if f"`{t}`" not in page)
    assert not missing, f"docs/agent-protocol.md does not document {missing}"
    # and shows each one in a JSON example
    no_example = sorted(t for t in types if not re.search(rf'"type":\s*"{t}"', page))
    assert not no_example, f"docs/agent-protocol.md has no example of {no_example}"


def test_docs_commands_write_and_check(tmp_path: Path) -> None:
    """``chatbridge docs check`` fails on a missing or stale document and ``docs write``
    brings them up to date; ``docs config`` prints the reference."""
    from typer.testing import CliRunner

    from chatbridge.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["docs", "check", str(tmp_path)]).exit_code == 1
    written = runner.invoke(app, ["docs", "write", str(tmp_path)])
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(docs_gen.generated())
    assert runner.invoke(app, ["docs", "check", str(tmp_path)]).exit_code == 0
    (tmp_path / docs_gen.CONFIGURATION).write_text("# edited by hand\n", encoding="utf-8")
    stale = runner.invoke(app, ["docs", "check", str(tmp_path)])
    assert stale.exit_code == 1
    assert "configuration.md is out of date" in stale.output
    printed = runner.invoke(app, ["docs", "config"])
    assert printed.exit_code == 0
    assert printed.output == docs_gen.configuration_markdown()


def test_every_page_is_linked() -> None:
    """No page of docs/ is an orphan: each is linked from the README or another page."""
    linked: set[Path] = set()
    for path in MARKDOWN:
        for _, target in links(path):
            where = target.partition("#")[0]
            if where and not re.match(r"^[a-z][a-z0-9+.-]*:", where, re.I):
                linked.add((path.parent / where).resolve())
    orphans = [str(p.relative_to(ROOT)) for p in MARKDOWN if p != ROOT / "README.md"]
    orphans = [name for name in orphans if ROOT / name not in linked]
    assert not orphans, f"pages nothing links to: {orphans}"


def example_frames(page: str) -> list[dict[str, object]]:
    """Every JSON object with a ``type`` shown in ``page``: in ```json blocks (several may
    follow each other) and in inline code."""
    found: list[object] = []
    decoder = json.JSONDecoder()
    for block in re.findall(r"```json\n(.*?)```", page, re.S):
        at = block.find("{")
        while at >= 0:
            value, end = decoder.raw_decode(block, at)  # a block that does not parse fails
            found.append(value)
            at = block.find("{", end)
    for code in re.findall(r"`(\{[^`]*\})`", page):
        try:
            found.append(json.loads(code))
        except json.JSONDecodeError:
            continue  # a shape written in prose ({title, value?}), not an example
    return [v for v in found if isinstance(v, dict) and "type" in v]


def test_protocol_examples_are_valid_frames() -> None:
    """Every example frame on docs/agent-protocol.md is valid by the generated schema: an
    example cannot drift from the models."""
    import jsonschema

    schema = json.loads(docs_gen.protocol_schema_json())
    by_type = {
        d["properties"]["type"]["const"]: name
        for name, d in schema["$defs"].items()
        if "const" in d.get("properties", {}).get("type", {})
    }
    frames = example_frames((DOCS / "agent-protocol.md").read_text(encoding="utf-8"))
    assert len(frames) > 25
    invalid = []
    for frame in frames:
        kind = str(frame["type"])
        assert kind in by_type, f"an example of an unknown type: {frame}"
        validator = jsonschema.Draft202012Validator({**schema, "$ref": f"#/$defs/{by_type[kind]}"})
        invalid += [f"{kind}: {error.message}" for error in validator.iter_errors(frame)]
    assert not invalid, "examples the schema refuses:\n" + "\n".join(invalid)


# The architecture page's example of adding a channel ("acme") names its would-be settings.
EXAMPLE_VARIABLES = {"CHATBRIDGE_ACME_TOKEN", "CHATBRIDGE_ACME_ALLOWED_NETWORKS"}


def test_variables_the_docs_name_exist() -> None:
    """A variable the README or a page names is one the reference lists: a renamed or removed
    setting cannot linger in the prose."""
    reference = (DOCS / docs_gen.CONFIGURATION).read_text(encoding="utf-8")
    known = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", reference)) | EXAMPLE_VARIABLES
    unknown = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in MARKDOWN
        if path.name != docs_gen.CONFIGURATION
        for name in set(
            re.findall(
                r"(?<![A-Za-z0-9_])((?:CHATBRIDGE|WEB_CHAT|CHATWOOT)_[A-Z0-9_]*[A-Z0-9])"
                r"(?![A-Za-z0-9_<*…])",
                path.read_text(encoding="utf-8"),
            )
        )
        if name not in known
    )
    assert not unknown, "variables the reference does not know:\n" + "\n".join(unknown)
