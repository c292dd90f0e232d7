"""The dataset: the export format (morale-export/1), which judgments count (selection, table), export and import.
May be imported by the rest of annotation and by training (training: format, selection, export.service only)."""
