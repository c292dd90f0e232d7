"""Who may do what: the "researcher" group, and ``is_researcher``, the one rule for it.

Researchers run the study from the admin and the API: they read everything, screen
annotators, retire scenarios, import contexts, export and start training. They are staff
users (the admin requires it) in the group ``researcher``; ``manage.py add_researcher``
makes one. Annotators are never staff, so they never reach the admin.

The group's permissions are (re)granted after every ``migrate``, so a new model's view
permission reaches researchers without a manual step. Permissions added by hand in the
admin are kept.

Any module may import this one (the admin, the API's ``IsResearcher``, the dashboard); it
imports nothing of the project, and no model at import time (so it never needs the app
registry to be ready).
"""

from __future__ import annotations

RESEARCHER_GROUP = "researcher"

# app label -> permission codenames beyond "view_<model>" on every model of the app.
EXTRA_PERMISSIONS = {
    "annotation": [
        "add_context", "change_context",
        "add_scenario", "change_scenario",
        "change_annotator",
        "add_datasetexport",
        "add_importbatch",
        # the instructions and practice rounds annotators see after consent
        "add_instructionsversion", "change_instructionsversion",
        "add_practiceround", "change_practiceround",
        "add_practiceitem", "change_practiceitem", "delete_practiceitem",
    ],
    "modelloop": ["change_modelversion"],
    "training": ["add_trainingrun"],
    "django_celery_beat": ["change_periodictask", "change_intervalschedule", "add_intervalschedule"],
}

# The answer is remembered on the user object: a request's user is a fresh object, so the
# group query runs at most once per request however many checks ask (API permission,
# serializers, filters).
_REMEMBERED = "_morale_is_researcher"


def is_researcher(user) -> bool:
    """Staff users in the researcher group, and superusers."""
    if user is None:
        return False
    remembered = getattr(user, _REMEMBERED, None)
    if remembered is not None:
        return remembered
    if not (user.is_authenticated and user.is_active):
        answer = False
    elif user.is_superuser:
        answer = True
    else:
        answer = user.is_staff and user.groups.filter(name=RESEARCHER_GROUP).exists()
    if user.is_authenticated:  # AnonymousUser is a fresh object anyway
        setattr(user, _REMEMBERED, answer)
    return answer


def ensure_researcher_group(**kwargs) -> None:
    """post_migrate: create the group and grant what it needs (idempotent)."""
    from django.contrib.auth.models import Group, Permission
    from django.db.models import Q

    group, _ = Group.objects.get_or_create(name=RESEARCHER_GROUP)
    wanted = Q()
    for app_label, extra in EXTRA_PERMISSIONS.items():
        wanted |= Q(content_type__app_label=app_label) & (Q(codename__startswith="view_") | Q(codename__in=extra))
    group.permissions.add(*Permission.objects.filter(wanted))


def researcher_make(user) -> None:
    """Make ``user`` a researcher: staff and in the group (not a superuser)."""
    from django.contrib.auth.models import Group

    ensure_researcher_group()
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    user.groups.add(Group.objects.get(name=RESEARCHER_GROUP))
    if hasattr(user, _REMEMBERED):  # an answer given before is out of date
        delattr(user, _REMEMBERED)
