"""Tools declared as K2.5 reads them: a TypeScript-style `namespace functions` built from their JSON schemas.

K2.5's tokenizer (the one vLLM and SGLang render its template with) turns the OpenAI tools list into
this text before the template sees it, and the template falls back to the tools' JSON only when that
text is empty:

    # Tools

    ## functions
    namespace functions {
    // Weather of a city
    type get_weather = (_: {
      // The city
      city: string,
      unit?: "c" | "f"
    }) => any;
    }

Required properties first, then optional ones (`name?`), each group by name; descriptions, limits
(maxLength, minimum, ...) and defaults become `//` comments; integer is number. Schemas this does not
express (`$ref`) raise `Unsupported`, and the caller declares the tools as JSON instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

INDENT = "  "
_LIMITS = {"string": ("maxLength", "minLength", "pattern"), "number": ("maximum", "minimum"),
           "integer": ("maximum", "minimum"), "array": ("maxItems", "minItems")}  # fmt: skip
_UNION = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean", "null": "null",
          "object": "{}", "array": "Array<any>"}  # fmt: skip


class Unsupported(ValueError):
    """A schema feature the TypeScript form does not render."""


def _comment(text: str, indent: str) -> str:
    return "".join((f"{indent}// {line}" if line else "") + "\n" for line in text.split("\n"))


def _notes(schema: Any, indent: str) -> str:
    """The `//` lines above a field: its description, then its limits."""
    if not isinstance(schema, dict):
        return ""
    out = _comment(schema["description"], indent) if schema.get("description") else ""
    kind = schema.get("type") if "enum" not in schema and "anyOf" not in schema else None
    keys = _LIMITS.get(kind, ()) if isinstance(kind, str) else ()
    limits = sorted((k, schema[k]) for k in keys if k in schema)
    if limits:
        out += f"{indent}// " + ", ".join(f"{k}: {v}" for k, v in limits) + "\n"
    return out


def _type(schema: Any, indent: str) -> str:
    """The TypeScript type of a JSON schema, its nested lines indented by `indent`."""
    if schema is True or schema == {}:
        return "any"
    if schema is False:
        return "null"
    if not isinstance(schema, dict):
        raise Unsupported(f"not a JSON schema: {schema!r:.60}")
    if "$ref" in schema or "$defs" in schema:
        raise Unsupported("$ref")
    if "anyOf" in schema:
        return " | ".join(_type(s, indent) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(_UNION[k] for k in kind)
    if kind == "object":
        return _object(schema, indent)
    if kind == "array":
        item = schema.get("items") or {}
        notes = _notes(item, indent + INDENT)
        if notes:
            return f"Array<\n{notes}{indent}{INDENT}{_type(item, indent + INDENT)}\n{indent}>"
        return f"Array<{_type(item, indent)}>"
    if kind is None:
        raise Unsupported(f"a schema without a type: {schema!r:.60}")
    return "number" if kind == "integer" else str(kind)


def _object(schema: dict[str, Any], indent: str) -> str:
    props = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    inner = indent + INDENT
    fields = []
    for name in sorted(props, key=lambda n: (n not in required, n)):
        prop = props[name]
        default = prop.get("default") if isinstance(prop, dict) else None
        lines = _notes(prop, inner)
        if default is not None:
            shown = (
                repr(default)
                if isinstance(default, (int, float, bool))
                else json.dumps(default, ensure_ascii=False)
            )
            lines += f"{inner}// Default: {shown}\n"
        fields.append(f"{lines}{inner}{name}{'' if name in required else '?'}: {_type(prop, inner)}")
    extra = schema.get("additionalProperties")
    if extra is not None:
        value = {True: "any", False: "never"}.get(extra) if isinstance(extra, bool) else _type(extra, inner)
        fields.append(f"{inner}[k: string]: {value}")
    return "{\n" + ",\n".join(fields) + f"\n{indent}}}" if fields else "{}"


def typescript(tools: Sequence[dict[str, Any]]) -> str:
    """The `# Tools` text for the function tools of an OpenAI tools list ("" when there are none)."""
    functions = []
    for tool in tools:
        fn = tool.get("function") if tool.get("type", "function") == "function" else None
        if not fn:
            continue
        params = _type(fn.get("parameters") or {"type": "object"}, "")
        head = _comment(fn["description"], "") if fn.get("description") else ""
        functions.append(f"{head}type {fn.get('name', 'function')} = (_: {params}) => any;")
    if not functions:
        return ""
    return "# Tools\n\n## functions\nnamespace functions {\n" + "\n".join(functions) + "\n}\n"
