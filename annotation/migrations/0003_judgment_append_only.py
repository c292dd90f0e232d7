"""Make the database itself refuse UPDATEs of judgment rows (they are append-only)."""

from django.db import migrations

POSTGRES_UP = """
CREATE OR REPLACE FUNCTION annotation_judgment_refuse_update() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'annotation_judgment rows are append-only (write a reconfirmation instead)';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER annotation_judgment_append_only
    BEFORE UPDATE ON annotation_judgment
    FOR EACH ROW EXECUTE FUNCTION annotation_judgment_refuse_update();
"""
POSTGRES_DOWN = """
DROP TRIGGER IF EXISTS annotation_judgment_append_only ON annotation_judgment;
DROP FUNCTION IF EXISTS annotation_judgment_refuse_update();
"""
SQLITE_UP = """
CREATE TRIGGER annotation_judgment_append_only
BEFORE UPDATE ON annotation_judgment
BEGIN
    SELECT RAISE(ABORT, 'annotation_judgment rows are append-only (write a reconfirmation instead)');
END;
"""
SQLITE_DOWN = "DROP TRIGGER IF EXISTS annotation_judgment_append_only;"


def _run(sql_by_vendor):
    def run(apps, schema_editor):
        sql = sql_by_vendor.get(schema_editor.connection.vendor)
        if sql:
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("annotation", "0002_initial")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRES_UP, "sqlite": SQLITE_UP}),
            _run({"postgresql": POSTGRES_DOWN, "sqlite": SQLITE_DOWN}),
        )
    ]
