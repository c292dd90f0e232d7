"""The API's OpenAPI schema says every answer an operation can give, not only the happy one.

``AutoSchema`` (the project's ``DEFAULT_SCHEMA_CLASS``) adds to each operation what every
view of this API shares, so no view has to repeat it and none can forget it:

- ``401`` (no or a wrong token), always; ``403`` where a permission beyond "logged in"
  applies (researchers only) or the operation writes (a session without its CSRF token);
- ``400``, always: a query parameter no FilterSet declares is refused on every operation,
  and query values and bodies are validated;
- ``404`` on operations with an ``{id}`` in their path (someone else's id answers the same);
- ``415`` on operations with a body (the API reads JSON only);
- every optional query parameter ``allowEmptyValue``: an empty value means "not given"
  (the browsable API's filter form sends empty fields).

Errors are JSON: ``{"detail": "..."}``, or for a 400 ``{"<field>": ["message", ...]}``.
Whatever is more specific (``@extend_schema(responses=...)``, e.g. a 409) stays.

Imports no app.
"""

from __future__ import annotations

from drf_spectacular import openapi
from rest_framework.permissions import IsAuthenticated

ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
VALIDATION_ERROR = {
    "type": "object",
    "description": 'What was refused: {"detail": "..."} or {"<field>": ["message", ...]}.',
    "additionalProperties": {},
}
ERRORS = {
    "400": ("The request was refused: a parameter or the body is invalid (the body says which).", VALIDATION_ERROR),
    "401": ("No credentials, or wrong ones: send `Authorization: Token <key>` (or log in).", ERROR),
    "403": ("Not allowed: researchers only, or a session request without its CSRF token.", ERROR),
    "404": ("No such object, or one you may not see (both answer the same).", ERROR),
    "415": ("The body must be JSON (`Content-Type: application/json`).", ERROR),
}


class AutoSchema(openapi.AutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and not parameter.get("required"):
                parameter["allowEmptyValue"] = True
        responses = operation.setdefault("responses", {})
        for code in self._error_codes(path, operation):
            if code not in responses:
                description, schema = ERRORS[code]
                responses[code] = {"description": description, "content": {"application/json": {"schema": schema}}}
        return operation

    def _error_codes(self, path: str, operation: dict) -> list[str]:
        codes = ["400", "401"]
        writes = "requestBody" in operation
        extra_permissions = any(
            not isinstance(permission, IsAuthenticated) for permission in self.view.get_permissions()
        )
        if extra_permissions or writes:
            codes.append("403")
        if "{" in path:
            codes.append("404")
        if writes:
            codes.append("415")
        return codes
