"""Dataset export, one stage a module: options, records (database -> records), writers, service.
Callers outside annotation.dataset use ``service`` (and ``annotation.dataset.format`` to read files)."""
