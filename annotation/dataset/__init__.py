"""The dataset: the export format (morale-export/1), which judgments count, export and import.
Importable by the rest of annotation and by training (format, selection, export service only)."""
