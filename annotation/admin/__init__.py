"""The researchers' admin, one module per area: contexts, annotators, judgments, jobs (exports,
imports), onboarding (instructions, practice).

Django's admin autodiscovery imports this package; nothing else should. Researchers are
staff users in the "researcher" group (``morale.roles``); annotators never reach it.
Writes go through the services; these classes only lay out lists, forms and actions.
"""

from . import annotators, contexts, jobs, judgments, onboarding  # noqa: F401 - each registers its ModelAdmins
