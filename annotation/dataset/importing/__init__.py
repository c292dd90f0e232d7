"""Bulk import of contexts and scenarios, one stage a module: readers, rows, images, matching, writer, service.
Callers (the admin, the command, the task) use ``service`` only."""
