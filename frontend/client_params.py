"""How `labqueue run --param name=value` becomes the JSON a pipeline's parameter
schema asks for, checked before anything is sent: a list from one value or
several (`--param sequences=a.fq --param sequences=b.fq`, or a pattern such as
`raw/*.fq` matched against the project's files), numbers, true or false, and the
choices a parameter allows. The server checks everything again; this is so that a
mistake is said at once, in one line, naming the parameter.

Only the standard library: the `labqueue` command needs no server code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from fnmatch import fnmatchcase

TRUE = {"true", "yes", "y", "1", "on"}
FALSE = {"false", "no", "n", "0", "off"}
PATTERN_CHARACTERS = set("*?[")


class ParamError(ValueError):
    """A value that does not fit its parameter; the message is one line."""


def parameters(
    schema: dict, pairs: tuple[str, ...], project_files: Callable[[], list[str]]
) -> dict:
    """The values of ``pairs`` (``name=value``, a name again for more of a list)
    as ``schema`` types them. ``project_files`` lists the project's files, asked
    only when a value is a pattern."""
    properties = schema.get("properties", {})
    given: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise ParamError(f"{pair!r}: write it as name=value")
        if name not in properties:
            known = ", ".join(sorted(properties)) or "none"
            raise ParamError(f"there is no parameter {name!r} (it has: {known})")
        given.setdefault(name, []).append(text)
    values = {}
    for name, texts in given.items():
        spec = properties[name]
        if spec.get("type") == "array":
            values[name] = _list(name, spec, texts, project_files)
        elif len(texts) > 1:
            raise ParamError(f"{name} takes one value; it was given {len(texts)}")
        else:
            values[name] = _value(name, spec, texts[0])
    return values


def _list(
    name: str, spec: dict, texts: list[str], project_files: Callable[[], list[str]]
) -> list:
    item = spec.get("items", {})
    found: list = []
    for text in texts:
        if text.startswith("["):  # a whole list written as JSON
            try:
                written = json.loads(text)
            except ValueError as exc:
                raise ParamError(f"{name}: {text!r} is not a JSON list") from exc
            found += [_value(name, item, json.dumps(v)) for v in written]
        elif item.get("format") == "file-path" and PATTERN_CHARACTERS & set(text):
            matched = [p for p in project_files() if glob_match(p, text)]
            if not matched:
                raise ParamError(f"{name}: {text!r} matches no file of the project")
            found += sorted(matched)
        else:
            found.append(_value(name, item, text))
    return found


def _value(name: str, spec: dict, text: str):
    """``text`` as the type ``spec`` gives, within its choices and bounds."""
    kind = spec.get("type", "string")
    if kind == "integer":
        value = _number(name, text, int, "a whole number")
    elif kind == "number":
        value = _number(name, text, float, "a number")
    elif kind == "boolean":
        word = text.strip().lower()
        if word not in TRUE | FALSE:
            raise ParamError(f"{name}: expected true or false, got {text!r}")
        value = word in TRUE
    else:
        value = json.loads(text) if _is_json_string(text) else text
    if "enum" in spec and value not in spec["enum"]:
        choices = ", ".join(str(choice) for choice in spec["enum"])
        raise ParamError(f"{name}: {text!r} is not one of: {choices}")
    if "minimum" in spec and value < spec["minimum"]:
        raise ParamError(f"{name}: must be at least {spec['minimum']}, got {text}")
    if "maximum" in spec and value > spec["maximum"]:
        raise ParamError(f"{name}: must be at most {spec['maximum']}, got {text}")
    return value


def _number(name: str, text: str, kind, words: str):
    try:
        return kind(text.strip())
    except ValueError:
        raise ParamError(f"{name}: expected {words}, got {text!r}") from None


def _is_json_string(text: str) -> bool:
    # Items of a JSON list come back here as JSON: '"a.fq"' is the text a.fq.
    return len(text) >= 2 and text[0] == text[-1] == '"'


def glob_match(path: str, pattern: str) -> bool:
    """Whether a project path matches a shell pattern: ``*`` stays within one
    folder, ``**`` spans any number of them (``raw/**/*.fq``)."""
    return _match(path.split("/"), pattern.strip("/").split("/"))


def _match(parts: list[str], pattern: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return (
        bool(parts)
        and fnmatchcase(parts[0], pattern[0])
        and _match(parts[1:], pattern[1:])
    )


def describe(schema: dict) -> list[str]:
    """The parameters as the run form shows them, a few lines each: name, type,
    required or default, bounds, choices, and the help text."""
    lines = []
    required = set(schema.get("required", []))
    for name, spec in schema.get("properties", {}).items():
        kind = _kind(spec)
        if name in required:
            kind += ", required"
        elif "default" in spec:
            kind += f", default {json.dumps(spec['default'])}"
        lines.append(f"  {name} ({kind})")
        title = spec.get("title")
        help_text = spec.get("description")
        for text in filter(None, (title, help_text)):
            lines.append(f"      {text}")
    return lines


def _kind(spec: dict) -> str:
    kind = spec.get("type", "string")
    if kind == "array":
        item = spec.get("items", {})
        words = "files" if item.get("format") == "file-path" else _kind(item)
        globs = item.get("glob")
        if globs:
            words += " " + " ".join(globs if isinstance(globs, list) else [globs])
        return f"list of {words}: repeat --param, or a pattern"
    if spec.get("format") == "file-path":
        return "a file of the project"
    words = {
        "integer": "whole number",
        "number": "number",
        "boolean": "true or false",
        "string": "text",
    }.get(kind, kind)
    if "enum" in spec:
        words = "one of " + ", ".join(str(c) for c in spec["enum"])
    if "minimum" in spec or "maximum" in spec:
        words += f" {spec.get('minimum', '')}–{spec.get('maximum', '')}"
    return words
