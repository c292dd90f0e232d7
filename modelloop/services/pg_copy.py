"""Rows of a PostgreSQL query read with binary ``COPY``: each field as raw bytes, no decoding.

The feature cache reads 32k vectors this way (``feature_cache._cache_rows``): the text
protocol sends bytea hex-encoded, and decoding that took longer than the whole rest of
a head-only rescore. ``copy_rows`` runs the query; ``parse_copy_binary`` is the format.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator, Sequence

from django.db import connection

# PostgreSQL docs, "COPY", "Binary Format": the file header starts with these 11 bytes.
SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def copy_rows(sql: str, params: Sequence) -> Iterator[tuple[memoryview | None, ...]]:
    """The rows of ``COPY (sql) TO STDOUT (FORMAT binary)`` on the default connection (PostgreSQL only).

    ``sql`` takes ``%s`` placeholders, filled from ``params`` by psycopg2's quoting.
    """
    buffer = io.BytesIO()
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg2's cursor under Django's wrapper: copy_expert is not wrapped
        raw.copy_expert(raw.mogrify(f"COPY ({sql}) TO STDOUT (FORMAT binary)", list(params)).decode(), buffer)
    return parse_copy_binary(buffer.getbuffer())


def parse_copy_binary(data: bytes | memoryview) -> Iterator[tuple[memoryview | None, ...]]:
    """Each row of a binary COPY stream as a tuple of its fields' bytes (None for NULL).

    The format: the 11-byte signature, a 32-bit flags field and a 32-bit header-extension
    length (that many bytes follow), then per row a 16-bit field count and per field a
    32-bit length (-1 for NULL) and the value in the type's binary send format (bigint:
    8 bytes big-endian, ``int.from_bytes(field, "big", signed=True)``; text and bytea: the
    bytes themselves); a field count of -1 ends the data. All integers are big-endian.
    Fields are views into ``data``, not copies. ValueError if the signature is missing.
    """
    view = memoryview(data)
    if bytes(view[: len(SIGNATURE)]) != SIGNATURE:
        raise ValueError("not a PostgreSQL binary COPY stream (no PGCOPY signature)")
    (extension,) = struct.unpack_from(">i", view, len(SIGNATURE) + 4)
    pos = len(SIGNATURE) + 8 + extension
    while True:
        (count,) = struct.unpack_from(">h", view, pos)
        pos += 2
        if count == -1:
            return
        fields: list[memoryview | None] = []
        for _ in range(count):
            (length,) = struct.unpack_from(">i", view, pos)
            pos += 4
            if length == -1:
                fields.append(None)
                continue
            fields.append(view[pos : pos + length])
            pos += length
        yield tuple(fields)
