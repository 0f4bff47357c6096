"""MkDocs hook: the API reference page is generated from the service's own OpenAPI document at build time."""

from __future__ import annotations

import json

MARKER = "<!-- openapi-reference -->"


def _schema_name(schema: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        return f"array of {_schema_name(schema.get('items', {}))}"
    if "anyOf" in schema:
        return " or ".join(_schema_name(s) for s in schema["anyOf"])
    return schema.get("type", "object")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(spec: dict) -> str:
    out = [
        f"OpenAPI {spec['openapi']}, {spec['info']['title']} {spec['info']['version']}. "
        "The same document is served live at `/openapi.json` (browsable at `/docs` and `/redoc`).",
        "",
    ]
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            out += [f"## `{method.upper()} {path}`", ""]
            if op.get("summary"):
                out += [f"**{op['summary']}**", ""]
            if op.get("description"):
                out += [op["description"].strip(), ""]
            params = op.get("parameters", [])
            if params:
                out += ["| parameter | in | type | required | description |", "| --- | --- | --- | --- | --- |"]
                for p in params:
                    schema = p.get("schema", {})
                    kind = _schema_name(schema) + (f", default {schema['default']!r}" if "default" in schema else "")
                    out.append(
                        f"| `{p['name']}` | {p['in']} | {_cell(kind)} | {'yes' if p.get('required') else 'no'} | "
                        f"{_cell(p.get('description', ''))} |"
                    )
                out.append("")
            body = op.get("requestBody")
            if body:
                kinds = ", ".join(
                    f"`{ct}` ({_schema_name(c.get('schema', {}))})" for ct, c in body.get("content", {}).items()
                )
                out += [f"Request body{' (required)' if body.get('required') else ''}: {kinds}", ""]
            responses = op.get("responses", {})
            if responses:
                out += ["| status | meaning | body |", "| --- | --- | --- |"]
                for status, response in responses.items():
                    content = response.get("content", {})
                    schema = next(iter(content.values()), {}).get("schema", {}) if content else {}
                    out.append(
                        f"| {status} | {_cell(response.get('description', ''))} | "
                        f"{_cell(_schema_name(schema)) if schema else ''} |"
                    )
                out.append("")
    out += [
        "## Schemas",
        "",
        "```json",
        json.dumps(spec.get("components", {}).get("schemas", {}), indent=1)[:200000],
        "```",
        "",
    ]
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    from stra_face.service.app import create_app  # the app object only: no models are loaded for its schema

    return markdown.replace(MARKER, render(create_app().openapi()))
