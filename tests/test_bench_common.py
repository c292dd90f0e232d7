"""The benchmarks' shared helpers (bench/common.py, and the load test's percentile)."""

import random
from pathlib import Path

import pytest

from bench import common
from bench.loadtest.report import percentile


def test_pg_url_for_replaces_only_the_database():
    assert common.pg_url_for("postgres://postgres@127.0.0.1:5432/postgres", "morale_bench") == (
        "postgres://postgres@127.0.0.1:5432/morale_bench"
    )
    assert common.pg_url_for("postgres://u:pw@db:5432/x?sslmode=require", "y") == "postgres://u:pw@db:5432/y?sslmode=require"


def test_pg_db_name_is_the_path_of_the_url():
    assert common.pg_db_name("postgres://postgres@127.0.0.1:5432/morale_import_bench") == "morale_import_bench"


def test_bench_env_points_everything_into_the_folder_and_overrides_win(tmp_path: Path):
    env = common.bench_env(database_url="sqlite:///x.sqlite3", folder=tmp_path, DEBUG="true")
    assert env["DJANGO_SETTINGS_MODULE"] == "morale.settings.local"
    assert env["DATABASE_URL"] == "sqlite:///x.sqlite3"
    assert env["MEDIA_ROOT"] == str(tmp_path / "media")
    assert env["MORALE_VAR_DIR"] == str(tmp_path / "var")
    assert env["CELERY_BROKER_URL"].startswith("filesystem://")
    assert env["DEBUG"] == "true"
    assert env["PYTHONPATH"].split(":")[0] == str(common.ROOT)


def test_scenarios_per_context_gives_three_or_four_and_the_total():
    per_context = common.scenarios_per_context(random.Random(0), 100, 347)
    assert len(per_context) == 100
    assert set(per_context) == {3, 4}
    assert sum(per_context) == 347


def test_last_json_line_takes_the_last_object_and_refuses_none():
    assert common.last_json_line('log line\n{"a": 1}\nmore\n{"b": 2}\n') == {"b": 2}
    with pytest.raises(RuntimeError):
        common.last_json_line("no result here")


def test_percentile_interpolates_between_ranks():
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 50) == 25.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 0) == 10.0
    assert percentile([7.0], 95) == 7.0


def test_verdict_words():
    assert common.verdict(True) == "PASS"
    assert common.verdict(False) == "FAIL"
    assert common.verdict(False, missed="MISS") == "MISS"
