"""Configuration mistakes told in one line each: the variable, what is wrong, an example.

pydantic reports a bad setting by field name and a generic message ("Input should be a valid
integer"), and pydantic-settings reports malformed JSON as a ``SettingsError`` whose message
never says "JSON". ``explain`` turns either into lines an operator can act on::

    CHATBRIDGE_PORT: 'eighty' is not a whole number; example: CHATBRIDGE_PORT=8000
    INBOX_AGENT_MAPPINGS: invalid JSON at line 1, column 17 (Expecting ',' delimiter); example: …

The variable is the one the operator wrote (``INBOX_AGENT_MAPPINGS`` or its
``CHATBRIDGE_`` twin, a command-line flag when the value came from one). Secrets are never
echoed. ``empty_settings`` names the variables set to an empty value, which the settings
treat as unset (``config.EMPTY_IS_UNSET``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import SettingsError

from chatbridge.config import EMPTY_IS_UNSET, Settings

_SECRET = re.compile(r"key|secret|token|password", re.IGNORECASE)
_MAPPINGS_EXAMPLE = (
    '\'[{"inbox_id": 1, "agent_config": {"agent_id": "support-bot", '
    '"websocket_url": "ws://127.0.0.1:8765"}}]\''
)
# Examples where the default says little (unset) or is not the shape to write.
EXAMPLES: dict[str, str] = {
    "database_url": "postgresql+asyncpg://chatbridge:password@127.0.0.1:5432/chatbridge",
    "redis_url": "redis://127.0.0.1:6379/0",
    "public_url": "https://bridge.example.com",
    "inbox_agent_mappings": _MAPPINGS_EXAMPLE,
    "agent_tokens": '\'{"support-bot": "a-token-of-at-least-16-chars"}\'',
    "webchat_cors_origins": "'[\"https://www.example.com\"]'",
    "channel_settings": "'{}'",
    "media_dir": "/var/lib/chatbridge/media",
}
_SECRET_EXAMPLE = "$(openssl rand -hex 24)"
# Why an empty secret matters, for the warning line.
_EMPTY_MEANS = {
    "chatwoot_webhook_secret": "Chatwoot webhooks are accepted without a signature check",
    "admin_key": "only local clients may use the console and the management API",
    "chatwoot_api_access_token": "replies cannot be sent to Chatwoot",
    "redis_url": "this replica runs alone (no distributed mode)",
}


def env_names(model: type[BaseModel], field: str) -> list[str]:
    """The environment variables that set ``field`` of settings class ``model``, preferred
    first (a seed name such as ``INBOX_AGENT_MAPPINGS`` before the ``CHATBRIDGE_`` one)."""
    info = model.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [c.upper() for c in alias.choices if isinstance(c, str)]
    if isinstance(alias, str):
        return [alias.upper()]
    prefix = str(model.model_config.get("env_prefix") or "")
    return [f"{prefix}{field}".upper()]


def _field_of(model: type[BaseModel], name: str) -> str | None:
    """The field of ``model`` that ``name`` (a field name or one of its variables) sets."""
    if name in model.model_fields:
        return name
    upper = name.upper()
    for field in model.model_fields:
        if upper in env_names(model, field):
            return field
    return None


class _Namer:
    """Names a setting as the operator wrote it: a flag, or the variable set in ``environ``."""

    def __init__(
        self, models: Iterable[type[BaseModel]], environ: Mapping[str, str], flags: set[str]
    ) -> None:
        self.models = list(models)
        self.environ = {k.upper() for k in environ}
        self.flags = flags

    def resolve(self, name: str) -> tuple[type[BaseModel] | None, str | None, str]:
        """(model, field, the name to show) for an error's first location part."""
        for model in self.models:
            field = _field_of(model, name)
            if field is None:
                continue
            if model is Settings and field in self.flags:
                return model, field, "--" + field.replace("_", "-")
            names = env_names(model, field)
            shown = next((n for n in names if n in self.environ), names[0])
            return model, field, shown
        # a channel's own setting: located as <channel>_<field> (channels.registry)
        return None, None, f"CHATBRIDGE_{name}".upper()


def _example(model: type[BaseModel] | None, field: str | None, name: str) -> str | None:
    if model is None or field is None:
        return None
    if field in EXAMPLES:
        value = EXAMPLES[field]
    elif _SECRET.search(field):
        value = _SECRET_EXAMPLE
    else:
        default = model.model_fields[field].default
        if isinstance(default, bool):
            value = str(default).lower()
        elif isinstance(default, int | float | str) and default != "":
            value = str(default)
            if any(c.isspace() for c in value):
                value = f"'{value}'"
        elif isinstance(default, list | dict):
            value = f"'{json.dumps(default)}'"
        else:
            return None
    if name.startswith("--"):
        return f"{name} {value}"
    return f"{name}={value}"


def _shown_input(value: Any, secret: bool) -> str:
    if secret or not isinstance(value, str | int | float) or len(str(value)) > 60:
        return "the value"
    return repr(value)


def _what(error: ErrorDetails, secret: bool) -> tuple[str, bool]:
    """What is wrong, in words; and whether an example helps."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if not ctx and kind.startswith(("greater_", "less_", "string_too_", "literal_")):
        kind = "value_error"  # relayed without its context (channels.registry): keep the msg
    got = _shown_input(error.get("input"), secret)
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{got} is not a whole number", True
    if kind in ("float_parsing", "float_type", "finite_number"):
        return f"{got} is not a number", True
    if kind in ("bool_parsing", "bool_type"):
        return f"{got} is not a boolean (true or false)", True
    if kind in ("literal_error", "enum"):
        return f"{got} is not one of {ctx.get('expected', '')}", True
    if kind == "json_invalid":
        return f"invalid JSON ({ctx.get('error', '')})", True
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("more than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"{got} is too {'small' if key[0] == 'g' else 'large'}: must be {words} " + str(
            ctx.get(key)
        ), True
    if kind == "string_too_short":
        return f"must be at least {ctx.get('min_length')} characters long", True
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long", False
    if kind == "missing":
        return "required but missing", True
    if kind == "list_type":
        return "must be a JSON list ([...])", True
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a JSON object ({...})", True
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message, False


def _sub_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def explain(
    exc: ValidationError | SettingsError,
    *,
    models: Iterable[type[BaseModel]] = (Settings,),
    environ: Mapping[str, str] | None = None,
    flags: Iterable[str] = (),
) -> list[str]:
    """One line per bad setting in ``exc``, naming it, saying what is wrong, with an example.

    Args:
        exc: what building the settings raised.
        models: the settings classes built (to name their variables).
        environ: the environment they were read from (which of a setting's names is set).
        flags: the ``Settings`` fields given as command-line flags.
    """
    import os

    namer = _Namer(models, os.environ if environ is None else environ, set(flags))
    if isinstance(exc, SettingsError):
        return [_explain_source_error(exc, namer)]
    lines: list[str] = []
    seen: set[str] = set()
    for error in exc.errors():
        head, *rest = error["loc"] or ("",)
        model, field, name = namer.resolve(str(head))
        secret = bool(_SECRET.search(str(field or head)))
        what, wants_example = _what(error, secret)
        where = name + _sub_location(tuple(rest))
        named = re.match(rf"{re.escape(str(field or head))}(\[[^\]]*\])? (.*)", what)
        if field and named:  # config.check_secret names the field (and its key)
            where, what, wants_example = where + (named.group(1) or ""), named.group(2), True
        line = f"{where}: {what}"
        example = _example(model, field, name) if wants_example else None
        if example is not None:
            line += f"; example: {example}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


def _explain_source_error(exc: SettingsError, namer: _Namer) -> str:
    """A value pydantic-settings could not even decode: malformed JSON, mostly."""
    match = re.search(r'field "([^"]+)"', str(exc))
    field_name = match.group(1) if match else ""
    model, field, name = namer.resolve(field_name) if field_name else (None, None, "setting")
    cause = exc.__cause__
    while isinstance(cause, SettingsError):  # a channel's error, renamed (channels.registry)
        cause = cause.__cause__
    if isinstance(cause, json.JSONDecodeError):
        what = f"invalid JSON at line {cause.lineno}, column {cause.colno} ({cause.msg})"
    else:
        what = f"cannot be read ({cause or exc})"
    example = _example(model, field, name)
    return f"{name}: {what}" + (f"; example: {example}" if example else "")


def empty_settings(environ: Mapping[str, str], env_file: str | Path | None = ".env") -> list[str]:
    """Warnings for the settings of ``EMPTY_IS_UNSET`` given an empty value in ``environ``
    (or ``env_file``): they count as unset, which may not be what was meant."""
    values = {k.upper(): v for k, v in environ.items()}
    if env_file is not None and Path(env_file).is_file():
        from dotenv import dotenv_values

        for key, value in dotenv_values(env_file).items():
            values.setdefault(key.upper(), value or "")
    out = []
    for field in EMPTY_IS_UNSET:
        for name in env_names(Settings, field):
            if name in values and not (values[name] or "").strip():
                means = _EMPTY_MEANS.get(field, "the default applies")
                out.append(f"warning: {name} is empty and treated as unset: {means}")
                break
    return out
