"""Who gets the researcher's view of a resource, and the machinery that hides fields and filters from everyone else.

Researchers (``morale.roles``) get every field; for anyone else the fields named in a
serializer's ``Meta.researcher_fields`` are removed and the ``research_filterset_class``
is not offered (docs/api.md).
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from morale.roles import is_researcher

RESEARCHERS_ONLY = "Researchers only: absent from annotators' responses."
RESEARCHERS_ONLY_FILTER = "Researchers only (for anyone else an unknown parameter: 400)."


def for_researcher(*, request, view) -> bool:
    """Whether this request gets the researcher's view. The schema served at /api/schema/
    is generated for its reader (an annotator's has no researcher-only fields or filters);
    generated without a user (``manage.py spectacular``) it documents the researcher's
    view, with the extra parts marked."""
    user = getattr(request, "user", None)
    if getattr(view, "swagger_fake_view", False) and not (user is not None and user.is_authenticated):
        return True
    return user is not None and is_researcher(user)


class AudienceSerializer(serializers.ModelSerializer):
    """A serializer whose ``Meta.researcher_fields`` are sent to researchers only.

    For anyone else the fields are removed before serializing (not blanked): their values
    are never read, and a response cannot leak them by mistake.
    """

    def get_fields(self):
        fields = super().get_fields()
        if not for_researcher(request=self.context.get("request"), view=self.context.get("view")):
            for name in self.Meta.researcher_fields:
                fields.pop(name)
        return fields


class AudienceSerializerSchema(OpenApiSerializerExtension):
    """In the schema, researcher-only fields are optional and say so."""

    target_class = AudienceSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        hidden = set(self.target.Meta.researcher_fields)
        required = [name for name in schema.get("required", []) if name not in hidden]
        if required:
            schema["required"] = required
        else:
            schema.pop("required", None)
        for name in hidden & set(schema["properties"]):  # an annotator's schema has none of them
            prop = schema["properties"][name]
            if "$ref" in prop:
                schema["properties"][name] = {"allOf": [prop], "description": RESEARCHERS_ONLY}
            else:
                prop["description"] = f"{prop.get('description', '')} {RESEARCHERS_ONLY}".strip()
        return schema


class AudienceViewSetMixin:
    """Picks the FilterSet by audience: ``research_filterset_class`` for researchers,
    ``filterset_class`` for everyone else (so filters on hidden fields are refused too)."""

    filterset_class = None
    research_filterset_class = None

    @property
    def researcher_view(self) -> bool:
        return for_researcher(request=self.request, view=self)

    def get_filterset_class(self):
        return self.research_filterset_class if self.researcher_view else self.filterset_class
