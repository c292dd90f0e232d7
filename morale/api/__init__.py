"""The project's REST API plumbing: permissions, pagination, query-parameter filters, the router.

The apps' ``api`` modules import ``permissions``, ``pagination`` and ``filters``; only
``morale/urls.py`` includes ``urls``. Of these, only ``permissions`` reads an app (``morale.roles``).
"""
