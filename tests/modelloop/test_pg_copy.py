"""The PostgreSQL binary COPY reader: the format parsed from hand-built bytes (any database),
and the same rows read from a real query (PostgreSQL pass)."""

import struct

import pytest
from django.db import connection

from modelloop.services.pg_copy import SIGNATURE, copy_rows, parse_copy_binary


def stream(rows, *, extension=b"") -> bytes:
    """A binary COPY stream as PostgreSQL writes it: header, rows (None = NULL), trailer."""
    out = SIGNATURE + struct.pack(">ii", 0, len(extension)) + extension
    for row in rows:
        out += struct.pack(">h", len(row))
        for field in row:
            out += struct.pack(">i", -1) if field is None else struct.pack(">i", len(field)) + field
    return out + struct.pack(">h", -1)


def as_bytes(rows):
    return [tuple(None if field is None else bytes(field) for field in row) for row in rows]


def test_each_row_comes_back_as_the_bytes_of_its_fields():
    bigint = (-5).to_bytes(8, "big", signed=True)
    rows = [(bigint, "héllo".encode(), b"\x00\xff\x00"), (b"\x00" * 8, b"", b"")]
    assert as_bytes(parse_copy_binary(stream(rows))) == rows
    first = next(parse_copy_binary(stream(rows)))
    assert int.from_bytes(first[0], "big", signed=True) == -5 and str(first[1], "utf-8") == "héllo"


def test_a_null_field_is_none_and_the_next_field_still_reads():
    assert as_bytes(parse_copy_binary(stream([(None, b"after")]))) == [(None, b"after")]


def test_the_header_extension_is_skipped():
    assert as_bytes(parse_copy_binary(stream([(b"x",)], extension=b"\x01\x02\x03"))) == [(b"x",)]


def test_a_stream_with_no_rows_yields_nothing():
    assert list(parse_copy_binary(stream([]))) == []


def test_bytes_without_the_signature_are_refused():
    with pytest.raises(ValueError, match="PGCOPY"):
        list(parse_copy_binary(b"id,text\n1,hello\n"))


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_real_query_reads_back_the_values_it_selected():
    assert connection.vendor == "postgresql"
    vector = bytes(range(256)) * 3
    sql = "SELECT q.id, %s::text, %s::bytea, NULL::text FROM unnest(%s::bigint[]) AS q(id) ORDER BY q.id"
    rows = list(copy_rows(sql, ["zebra crossing", vector, [3, -1, 2**40]]))
    assert [int.from_bytes(row[0], "big", signed=True) for row in rows] == [-1, 3, 2**40]
    assert all(str(row[1], "utf-8") == "zebra crossing" and bytes(row[2]) == vector and row[3] is None for row in rows)
