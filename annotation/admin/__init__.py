"""The researchers' admin, one module per area: contexts, annotators, judgments, jobs (exports,
imports), reviews (written scenarios to approve, reported scenarios, reports, page comments),
onboarding (instructions, practice).

Django's admin autodiscovery imports this package; nothing else should. Researchers are
staff users in the "researcher" group (``morale.roles``); annotators never reach it.
Writes go through the services; these classes only lay out lists, forms and actions.
"""

from django.contrib import admin

from . import annotators, contexts, jobs, judgments, onboarding, reviews  # noqa: F401 - each registers its ModelAdmins

# Django's navigation sidebar takes 276 px of every page: at 1280 px it squeezed the
# judgment, disagreement and prediction lists into a 631 px scroll box that hid their scores.
# The admin's home page lists every model, and the breadcrumbs lead back to it.
admin.site.enable_nav_sidebar = False
