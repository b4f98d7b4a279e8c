"""The JSON Schema a new TES task (tesTask, TES 1.1) must meet here: the
specification's types, plus what this server needs (executors with a command,
at most a few hundred of everything)."""

STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

INPUT = {
    "type": "object",
    "required": ["path"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "url": {"type": "string"},
        "path": {"type": "string"},
        "type": {"enum": ["FILE", "DIRECTORY"]},
        "content": {"type": "string"},
        "streamable": {"type": "boolean"},
    },
}

OUTPUT = {
    "type": "object",
    "required": ["url", "path"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "url": {"type": "string"},
        "path": {"type": "string"},
        "path_prefix": {"type": "string"},
        "type": {"enum": ["FILE", "DIRECTORY"]},
    },
}

EXECUTOR = {
    "type": "object",
    "required": ["image", "command"],
    "properties": {
        "image": {"type": "string", "minLength": 1, "maxLength": 255},
        "command": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "items": {"type": "string"},
        },
        "workdir": {"type": "string"},
        "stdin": {"type": "string"},
        "stdout": {"type": "string"},
        "stderr": {"type": "string"},
        "env": STRING_MAP,
        "ignore_error": {"type": "boolean"},
    },
}

RESOURCES = {
    "type": "object",
    "properties": {
        "cpu_cores": {"type": "integer", "minimum": 1},
        "preemptible": {"type": "boolean"},
        "ram_gb": {"type": "number", "exclusiveMinimum": 0},
        "disk_gb": {"type": "number", "exclusiveMinimum": 0},
        "zones": {"type": "array", "items": {"type": "string"}},
        "backend_parameters": STRING_MAP,
        "backend_parameters_strict": {"type": "boolean"},
    },
}

TASK = {
    "type": "object",
    "required": ["executors"],
    "properties": {
        "name": {"type": "string", "maxLength": 255},
        "description": {"type": "string", "maxLength": 10000},
        "inputs": {"type": "array", "maxItems": 500, "items": INPUT},
        "outputs": {"type": "array", "maxItems": 500, "items": OUTPUT},
        "resources": RESOURCES,
        "executors": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": EXECUTOR,
        },
        "volumes": {"type": "array", "maxItems": 50, "items": {"type": "string"}},
        "tags": {
            "type": "object",
            "maxProperties": 100,
            "additionalProperties": {"type": "string", "maxLength": 1000},
        },
    },
}
