"""Run parameters: checked against the pipeline's JSON Schema, then turned into argv.

Validation uses the ``jsonschema`` library, with two additions for project files:
``"format": "file-path"`` values must be files of the project, and ``"glob"`` (one
pattern or a list) restricts which. The argv is a list built from checked values;
nothing ever goes through a shell.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatch
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators

from .manifest import PLACEHOLDER_RE, Pipeline


class ParamsInvalid(ValueError):
    """Values the schema refuses, as {field: message} (field "" for the form)."""

    def __init__(self, errors: dict[str, str], too_long: tuple[str, ...] = ()):
        self.errors = errors
        self.too_long = too_long  # fields refused for their length
        super().__init__("; ".join(f"{k or 'form'}: {v}" for k, v in errors.items()))


def _globs(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _glob_keyword(validator, globs, instance, schema):
    if isinstance(instance, str) and not any(
        fnmatch(instance.rsplit("/", 1)[-1], g) for g in _globs(globs)
    ):
        yield ValidationError(f"{instance} is not a {' or '.join(_globs(globs))} file")


_Validator = validators.extend(Draft202012Validator, {"glob": _glob_keyword})


def matches_glob(path: str, prop: dict) -> bool:
    item = prop.get("items", prop)
    globs = item.get("glob")
    return globs is None or any(
        fnmatch(path.rsplit("/", 1)[-1], g) for g in _globs(globs)
    )


# JSON Schema's types, as a researcher says them.
TYPE_WORDS = {
    "array": "a list (one value or several)",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "string": "text",
    "object": "a set of named values",
    "null": "empty",
}


def _message(error: ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "enum":
        return "choose one of: " + ", ".join(str(v) for v in error.validator_value)
    if error.validator == "minimum":
        return f"must be at least {error.validator_value}"
    if error.validator == "maximum":
        return f"must be at most {error.validator_value}"
    if error.validator == "type":
        kinds = error.validator_value
        kinds = kinds if isinstance(kinds, list) else [kinds]
        return "must be " + " or ".join(TYPE_WORDS.get(k, k) for k in kinds)
    if error.validator == "format" and error.validator_value == "file-path":
        return f"{error.instance} is not a file of this project"
    if error.validator == "minItems":
        return f"choose at least {error.validator_value}"
    if error.validator == "pattern":
        return schema.get("errorMessage", "has characters that are not allowed")
    return error.message


def _too_long(value: Any, max_chars: int) -> int | None:
    """The length of the longest text in ``value`` (a list's items included) when
    one is over ``max_chars``."""
    items = value if isinstance(value, list) else [value]
    longest = max((len(item) for item in items if isinstance(item, str)), default=0)
    return longest if longest > max_chars else None


def _check_lengths(values: dict[str, Any], max_chars: int | None) -> None:
    """No text value longer than ``max_chars``, whatever the schema says (a message
    on its field). Raises ParamsInvalid."""
    if max_chars is None:
        return
    errors = {}
    for key, value in values.items():
        length = _too_long(value, max_chars)
        if length is not None:
            errors[key] = (
                f"is too long: {length:,} characters, and at most "
                f"{max_chars:,} are allowed"
            )
    if errors:
        raise ParamsInvalid(errors, too_long=tuple(errors))


def _check_command(
    pipeline: Pipeline, values: dict[str, Any], max_argv_bytes: int | None
) -> None:
    """The whole command no longer than ``max_argv_bytes`` (a message for the
    form). Raises ParamsInvalid."""
    if max_argv_bytes is None:
        return
    size = sum(len(part.encode()) + 1 for part in build_argv(pipeline, values))
    if size > max_argv_bytes:
        raise ParamsInvalid(
            {
                "": f"the parameters are too long together ({size:,} bytes; at "
                f"most {max_argv_bytes:,}): shorten the longest values or "
                "choose fewer files"
            }
        )


def validate_params(
    pipeline: Pipeline,
    values: dict[str, Any],
    project_files: Iterable[str],
    max_chars: int | None = None,
    max_argv_bytes: int | None = None,
) -> dict[str, Any]:
    """Check ``values`` against the site's caps, whatever the schema allows (each
    text value at most ``max_chars``, the whole command at most
    ``max_argv_bytes``), and against the schema; return them with defaults filled
    in."""
    _check_lengths(values, max_chars)  # before the schema reads them
    files = set(project_files)
    checker = FormatChecker(formats=())
    checker.checks("file-path")(
        lambda value: not isinstance(value, str) or value in files
    )
    schema = pipeline.schema
    complete = {
        key: prop["default"]
        for key, prop in schema.get("properties", {}).items()
        if "default" in prop
    }
    complete.update(values)
    errors: dict[str, str] = {}
    for error in sorted(
        _Validator(schema, format_checker=checker).iter_errors(complete),
        key=lambda e: list(e.path),
    ):
        if error.validator == "required":
            key = error.message.split("'")[1]
            errors.setdefault(key, "is required")
        elif error.validator == "additionalProperties":
            errors.setdefault("", "unknown parameters were sent")
        else:
            key = str(error.path[0]) if error.path else ""
            errors.setdefault(key, _message(error))
    # A name the schema does not declare is never used: most likely a typo.
    declared = schema.get("properties", {})
    for key in values:
        if key not in declared:
            errors.setdefault(key, "this pipeline has no parameter of that name")
    if errors:
        raise ParamsInvalid(errors)
    _check_command(pipeline, complete, max_argv_bytes)
    return complete


def build_argv(
    pipeline: Pipeline,
    params: dict[str, Any],
    input_dir: str = "/data/input",
    output_dir: str = "/data/output",
    pipeline_dir: str = "/app",
) -> list[str]:
    """The command with ``{placeholders}`` filled from checked ``params``.

    An element that is only ``{name}`` takes a list value as several arguments and
    disappears when the value is None; inside a longer element the value is
    substituted as text. File paths are given inside ``input_dir``; the defaults
    are the paths inside the container, the local runner passes real folders.
    """
    file_fields = set(pipeline.file_fields())

    def render(key: str, value: Any) -> list[str]:
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        if key in file_fields:
            return [f"{input_dir}/{item}" for item in items]
        return [
            str(item).lower() if isinstance(item, bool) else str(item) for item in items
        ]

    known = {
        "input_dir": input_dir,
        "output_dir": output_dir,
        "pipeline_dir": pipeline_dir,
    }
    argv: list[str] = []
    for part in pipeline.command:
        whole = PLACEHOLDER_RE.fullmatch(part)
        if whole:
            key = whole.group(1)
            argv.extend([known[key]] if key in known else render(key, params.get(key)))
            continue

        def substitute(match) -> str:
            key = match.group(1)
            if key in known:
                return known[key]
            return " ".join(render(key, params.get(key)))

        argv.append(PLACEHOLDER_RE.sub(substitute, part))
    return argv
