"""Tool declarations in the harmony prompt (docs/harmony-tools.md): the texts gpt-oss was trained on.

* Built-in tools (`browser`, `python`) are declared in the system message's `# Tools` section.
* Developer-defined functions go in the developer message's `functions` namespace, each one's JSON
  Schema written as the TypeScript-like type the model was trained on.
* A response format (structured output) goes at the end of the developer message.

Everything here is byte-identical to what `openai-harmony` renders (tests/engine/test_harmony_tools.py
compares the two); the JSON written into the prompt (defaults, schemas) is formatted the way that
library's JSON writer does it (compact, keys in their original order, non-ASCII kept as is).
"""

from __future__ import annotations

import decimal
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from engine.types import BuiltinTool, FunctionTool, ResponseFormat

FUNCTIONS_NAMESPACE = "functions"
FUNCTIONS_CHANNEL_LINE = "Calls to these tools must go to the commentary channel: 'functions'."

BROWSER_DESCRIPTION = (
    "Tool for browsing.\n"
    "The `cursor` appears in brackets before each browsing display: `[{cursor}]`.\n"
    "Cite information from the tool using the following format:\n"
    "`【{cursor}†L{line_start}(-L{line_end})?】`, for example: `【6†L9-L11】` or `【8†L3】`.\n"
    "Do not quote more than 10 words directly from the tool output.\n"
    "sources=web (default: web)"
)
BROWSER_FUNCTIONS: tuple[FunctionTool, ...] = (
    FunctionTool(
        "search",
        "Searches for information related to `query` and displays `topn` results.",
        {"type": "object",
         "properties": {"query": {"type": "string"}, "topn": {"type": "number", "default": 10},
                        "source": {"type": "string"}},
         "required": ["query"]},
    ),
    FunctionTool(
        "open",
        "Opens the link `id` from the page indicated by `cursor` starting at line number `loc`, showing "
        "`num_lines` lines.\n"
        "Valid link ids are displayed with the formatting: `【{id}†.*】`.\n"
        "If `cursor` is not provided, the most recent page is implied.\n"
        "If `id` is a string, it is treated as a fully qualified URL associated with `source`.\n"
        "If `loc` is not provided, the viewport will be positioned at the beginning of the document or centered "
        "on the most relevant passage, if available.\n"
        "Use this function without `id` to scroll to a new location of an opened page.",
        {"type": "object",
         "properties": {"id": {"type": ["number", "string"], "default": -1},
                        "cursor": {"type": "number", "default": -1},
                        "loc": {"type": "number", "default": -1},
                        "num_lines": {"type": "number", "default": -1},
                        "view_source": {"type": "boolean", "default": False},
                        "source": {"type": "string"}}},
    ),
    FunctionTool(
        "find",
        "Finds exact matches of `pattern` in the current page, or the page given by `cursor`.",
        {"type": "object",
         "properties": {"pattern": {"type": "string"}, "cursor": {"type": "number", "default": -1}},
         "required": ["pattern"]},
    ),
)
PYTHON_DESCRIPTION = (
    "Use this tool to execute Python code in your chain of thought. The code will not be shown to the user. "
    "This tool should be used for internal reasoning, but not for code that is intended to be visible to the "
    "user (e.g. when creating plots, tables, or files).\n\n"
    "When you send a message containing Python code to python, it will be executed in a stateful Jupyter "
    "notebook environment. python will respond with the output of the execution or time out after 120.0 "
    "seconds. The drive at '/mnt/data' can be used to save and persist user files. Internet access for this "
    "session is UNKNOWN. Depends on the cluster."
)
BUILTIN_TOOLS: tuple[BuiltinTool, ...] = ("browser", "python")


@dataclass(frozen=True, slots=True)
class ToolNamespace:
    """One `## name` block of a `# Tools` section: a description and (maybe) functions."""

    name: str
    description: str | None
    functions: tuple[FunctionTool, ...]


def builtin_namespace(name: BuiltinTool) -> ToolNamespace:
    if name == "browser":
        return ToolNamespace("browser", BROWSER_DESCRIPTION, BROWSER_FUNCTIONS)
    if name == "python":
        return ToolNamespace("python", PYTHON_DESCRIPTION, ())
    raise ValueError(f"unknown built-in tool {name!r} (known: {', '.join(BUILTIN_TOOLS)})")


# --- JSON as the prompt shows it --------------------------------------------------------------------


def _float_text(x: float) -> str:
    """A float as the shortest round-trip decimal, laid out like the Rust `ryu` writer harmony uses.

    Python's repr gives the same digits; only the layout differs (1e-05 vs 0.00001, 1e+16 vs 1e16).
    """
    if not math.isfinite(x):
        return "null"
    sign, digit_tuple, exp = decimal.Decimal(repr(x)).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return ("-" if sign else "") + "0.0"
    stripped = digits.rstrip("0")
    exp += len(digits) - len(stripped)
    digits, n = stripped, len(stripped)
    point = n + exp                         # value = 0.<digits> * 10**point
    head = "-" if sign else ""
    if 0 <= exp and point <= 16:            # a whole number: digits, zeros, ".0"
        return f"{head}{digits}{'0' * exp}.0"
    if 0 < point <= 16:                     # the point falls inside the digits
        return f"{head}{digits[:point]}.{digits[point:]}"
    if -5 < point <= 0:                     # 0.000ddd
        return f"{head}0.{'0' * -point}{digits}"
    mantissa = digits[0] + ("." + digits[1:] if n > 1 else "")
    return f"{head}{mantissa}e{point - 1}"   # no '+' and no leading zeros in the exponent


def prompt_json(value: object) -> str:
    """Compact JSON as harmony writes it into the prompt (defaults, response-format schemas)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        # outside 64 bits the Rust JSON reader keeps only a float
        return str(value) if -(2**63) <= value < 2**64 else _float_text(float(value))
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{prompt_json(v)}"
                              for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(prompt_json(v) for v in value) + "]"
    raise TypeError(f"not JSON: {type(value).__name__}")


def _lines(text: str) -> list[str]:
    """Lines the way harmony splits a description: at "\\n" (a "\\r" before it is dropped); no empty last line."""
    pieces = text.split("\n")
    out = [p[:-1] if p.endswith("\r") else p for p in pieces[:-1]]
    if pieces[-1]:
        out.append(pieces[-1])
    return out


# --- JSON Schema -> the TypeScript-like types the model reads ----------------------------------------


def _get(schema: object, key: str) -> object:
    return schema.get(key) if isinstance(schema, Mapping) else None


def _has(schema: object, key: str) -> bool:
    return isinstance(schema, Mapping) and key in schema


def _str(schema: object, key: str) -> str | None:
    v = _get(schema, key)
    return v if isinstance(v, str) else None


def _is_enum(schema: object) -> bool:
    v = _get(schema, "enum")
    return isinstance(v, list) and len(v) > 0


def _nullable(schema: object, type_text: str) -> str:
    if _get(schema, "nullable") is True and "null" not in type_text:
        return f"{type_text} | null"
    return type_text


def _default_comment(schema: object, *, enum_raw: bool) -> str | None:
    """`default: ...` of a schema: plain strings quoted; an enum's string raw when `enum_raw`."""
    if not _has(schema, "default"):
        return None
    default = _get(schema, "default")
    if isinstance(default, str) and not _is_enum(schema):
        return f'default: "{default}"'
    if isinstance(default, str) and enum_raw:
        return f"default: {default}"
    return f"default: {prompt_json(default)}"


def schema_to_typescript(schema: object, indent: str = "") -> str:
    """The type harmony writes for a JSON Schema (the subset it understands; anything else is `any`).

    Understood: `type` (also a list of types; integer is number), object `properties` (in their
    order) with `required`, `title`/`description`/`examples` comments, `default`, string `enum`,
    array `items`, `oneOf`, `nullable`. Not understood (rendered `any`): `anyOf`, `allOf`, `$ref`,
    `const`, ... (see docs/harmony-tools.md).
    """
    one_of = _get(schema, "oneOf")
    if isinstance(one_of, list):
        out = []
        for variant in one_of:
            out.append(f"\n{indent} | ")
            out.append(_nullable(variant, schema_to_typescript(variant, indent + "   ")))
            trailing = []
            desc = _str(variant, "description")
            if desc is not None:
                trailing.append(desc)
            default = _default_comment(variant, enum_raw=False)
            if default is not None:
                trailing.append(default)
            if trailing:
                out.append(" // " + " ".join(trailing))
        return "".join(out)
    types = _get(schema, "type")
    if isinstance(types, list):
        names = ["number" if t == "integer" else t for t in types if isinstance(t, str)]
        if names:
            return " | ".join(names)
    if not isinstance(types, str):
        return "any"
    if types == "object":
        return _object_to_typescript(schema, indent)
    if types == "string":
        enum = _get(schema, "enum")
        if isinstance(enum, list):
            values = [f'"{v}"' for v in enum if isinstance(v, str)]
            if values:
                return " | ".join(values)
        return "string"
    if types in ("number", "integer"):
        return "number"
    if types == "boolean":
        return "boolean"
    if types == "array":
        if _has(schema, "items"):
            return f"{schema_to_typescript(_get(schema, 'items'), indent)}[]"
        return "Array<any>"
    return "any"


def _object_to_typescript(schema: object, indent: str) -> str:
    out: list[str] = []
    desc = _str(schema, "description")
    if desc is not None:
        out.append(f"{indent}// {desc}\n")
    out.append("{\n")
    props = _get(schema, "properties")
    if isinstance(props, Mapping):
        req = _get(schema, "required")
        required = {r for r in req if isinstance(r, str)} if isinstance(req, list) else set()
        for key, val in props.items():
            optional = "" if key in required else "?"
            title = _str(val, "title")
            if title is not None:
                out.append(f"{indent}// {title}\n{indent}//\n")
            if not _has(val, "oneOf"):
                d = _str(val, "description")
                if d is not None:
                    out.append(f"{indent}// {d}\n")
            examples = _get(val, "examples")
            if isinstance(examples, list) and examples:
                out.append(f"{indent}// Examples:\n")
                out.extend(f'{indent}// - "{ex}"\n' for ex in examples if isinstance(ex, str))
            variants = _get(val, "oneOf")
            if isinstance(variants, list):
                out.append(_one_of_property(key, optional, val, variants, indent))
                continue
            type_text = _nullable(val, schema_to_typescript(val, indent + "    "))
            out.append(f"{indent}{key}{optional}: {type_text},")
            if not _has(val, "oneOf"):
                default = _default_comment(val, enum_raw=True)
                if default is not None:
                    out.append(f" // {default}")
            out.append("\n")
    out.append(f"{indent}}}")
    return "".join(out)


def _one_of_property(key: str, optional: str, val: object, variants: list, indent: str) -> str:
    out: list[str] = []
    property_desc = _str(val, "description")
    first_desc = _str(variants[0], "description") if variants else None
    skip_desc = property_desc is not None and first_desc == property_desc
    desc_above = False
    if not skip_desc and property_desc is not None:
        out.append(f"{indent}// {property_desc}\n")
        desc_above = True
    default = _default_comment(val, enum_raw=True)
    if default is not None:
        out.append(f"{indent}// {default}\n")
    out.append(f"{indent}{key}{optional}:\n")
    for i, variant in enumerate(variants):
        out.append(f"{indent} | ")
        out.append(_nullable(variant, schema_to_typescript(variant, indent + "   ")))
        trailing = []
        variant_desc = _str(variant, "description")
        if not (i == 0 and desc_above) and variant_desc is not None and variant_desc != property_desc:
            trailing.append(variant_desc)
        variant_default = _default_comment(variant, enum_raw=True)
        if variant_default is not None:
            trailing.append(variant_default)
        if trailing:
            out.append(" // " + " ".join(trailing))
        out.append("\n")
    out.append(f"{indent},\n")
    return "".join(out)


# --- sections ---------------------------------------------------------------------------------------


def tools_section(namespaces: Iterable[ToolNamespace]) -> str:
    """`# Tools` with one `## name` block per namespace, in name order (as harmony sorts them)."""
    sections = ["# Tools"]
    for ns in sorted(namespaces, key=lambda n: n.name):
        block = [f"## {ns.name}\n"]
        for line in _lines(ns.description or ""):
            block.append(f"// {line}" if ns.functions else line)
        if ns.functions:
            block.append(f"namespace {ns.name} {{\n")
            for fn in ns.functions:
                block.extend(f"// {line}" for line in _lines(fn.description))
                if fn.parameters is not None:
                    block.append(f"type {fn.name} = (_: {schema_to_typescript(fn.parameters)}) => any;\n")
                else:
                    block.append(f"type {fn.name} = () => any;\n")
            block.append(f"}} // namespace {ns.name}")
        sections.append("\n".join(block))
    return "\n\n".join(sections)


def response_format_section(fmt: ResponseFormat) -> str:
    """`# Response Formats` (the end of the developer message): the schema as one line of JSON."""
    body = f"// {fmt.description}\n" if fmt.description else ""
    return f"# Response Formats\n\n## {fmt.name}\n\n{body}{prompt_json(fmt.schema)}"


# --- function names ---------------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def sanitize_function_name(name: str) -> str:
    """A name the model can write after `to=functions.` and that reads as a TypeScript identifier.

    Valid identifiers are kept as they are; any other character becomes `_` (a space, `-` or `.`
    inside a header breaks parsing or confuses the model), a leading digit gets a `_` before it.
    """
    if _IDENTIFIER.match(name):
        return name
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not out or out[0].isdigit():
        out = "_" + out
    return out


def function_names(tools: Sequence[FunctionTool]) -> dict[str, str]:
    """{caller's name: name in the prompt} for every function, unique (a clash gets `_2`, `_3`, ...).

    Names that are already identifiers are never changed, so a clash is always resolved on the
    sanitised one.
    """
    out: dict[str, str] = {}
    taken = {t.name for t in tools if _IDENTIFIER.match(t.name)}
    for tool in tools:
        if tool.name in out:
            continue
        if _IDENTIFIER.match(tool.name):
            out[tool.name] = tool.name
            continue
        base = sanitize_function_name(tool.name)
        candidate, k = base, 2
        while candidate in taken:
            candidate, k = f"{base}_{k}", k + 1
        taken.add(candidate)
        out[tool.name] = candidate
    return out


def functions_namespace(tools: Sequence[FunctionTool]) -> ToolNamespace:
    names = function_names(tools)
    seen: set[str] = set()
    fns = []
    for t in tools:
        if t.name in seen:
            continue
        seen.add(t.name)
        fns.append(FunctionTool(names[t.name], t.description, t.parameters))
    return ToolNamespace(FUNCTIONS_NAMESPACE, None, tuple(fns))


# --- routing a call ---------------------------------------------------------------------------------

BROWSER_FUNCTION_NAMES = tuple(fn.name for fn in BROWSER_FUNCTIONS)


@dataclass(frozen=True, slots=True)
class ToolCallTarget:
    """Which tool a parsed recipient addresses.

    kind "function": `name` is the caller's function name (sanitising undone); "browser": `name` is
    "search" | "open" | "find"; "python": `name` is "python"; "unknown": `name` is the raw recipient.
    """

    kind: str
    name: str


def route_recipient(recipient: str, functions: Sequence[FunctionTool] = (),
                    builtin_tools: Sequence[BuiltinTool] = ()) -> ToolCallTarget:
    """Map what the model wrote after `to=` onto a declared tool, leniently.

    Accepted besides the exact forms (`functions.NAME`, `browser.search`, `python`): the caller's own
    (unsanitised) name after `functions.`, a declared function's name without the `functions.`
    prefix, and `functions.python` / `functions.browser.X` for enabled built-ins when no function
    has that name. Anything else (including leaked control-token text) is "unknown".
    """
    names = function_names(functions)
    back = {prompt: caller for caller, prompt in names.items()}
    r = recipient.strip()
    bare = r[len(FUNCTIONS_NAMESPACE) + 1:] if r.startswith(FUNCTIONS_NAMESPACE + ".") else None
    for candidate in ([bare] if bare is not None else []) + [r]:
        if candidate in back:
            return ToolCallTarget("function", back[candidate])
        if candidate in names:
            return ToolCallTarget("function", candidate)
    name = bare if bare is not None else r
    if name == "python" and "python" in builtin_tools:
        return ToolCallTarget("python", "python")
    if name.startswith("browser.") and "browser" in builtin_tools and name[8:] in BROWSER_FUNCTION_NAMES:
        return ToolCallTarget("browser", name[8:])
    return ToolCallTarget("unknown", r)
