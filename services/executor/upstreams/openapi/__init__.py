"""REST APIs as MCP servers.

An OpenAPI 3.0 / 3.1 or Swagger 2.0 document turned into tools, and a tool call turned into the HTTP
request the document describes (docs/openapi.md).

Pure modules, no NATS and no MCP session: `source` reads documents (files or URLs, YAML or JSON,
bounded), `refs` resolves `$ref`s across them, `swagger2` converts Swagger 2.0 to the 3.x model,
`schemas` makes self-contained JSON Schema 2020-12 out of document schemas, `operations` collects and
curates operations, `names` names their tools, `definitions` writes the tool definitions, `http_request`
builds a call's request, `results` maps the answer to a tool result, `auth` adds credentials, and `api`
puts it together (`load_api`) with the list of what was refused and why. `upstream` is the server kind.
"""
