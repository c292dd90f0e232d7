"""Demo data (contexts, scenarios, accounts) as plain Python, and the pictures it draws.

Only ``manage.py seed_demo`` (and its tests) import it; it touches no database.
"""
