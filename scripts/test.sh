#!/usr/bin/env bash
# Run the tests: ./scripts/test.sh [pytest args]
#
# Creates or updates .venv from requirements-dev.txt, installs Debian's chromium for the
# browser tests when it is missing and we are root, then runs pytest twice:
#   1. embedded: SQLite and an in-memory broker; tests marked `postgres` skip.
#   2. PostgreSQL + Redis, when PostgreSQL answers at MORALE_TEST_DATABASE_URL
#      (default postgres://postgres@127.0.0.1:5432/test), with the broker at
#      MORALE_TEST_REDIS_URL (default redis://127.0.0.1:6379/15); browser tests left out.
# With MORALE_REQUIRE_SERVICES=1 (CI) a missing PostgreSQL or Redis fails the run instead
# of skipping the second pass. The last line sums both passes: N passed, N failed, N skipped.
set -euo pipefail

# shellcheck source=run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"  # ROOT, VENV, ensure_venv; starts nothing
cd "$ROOT"

DB_URL="${MORALE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS_URL="${MORALE_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
REQUIRE="${MORALE_REQUIRE_SERVICES:-0}"
RESULTS="$ROOT/var/test-results"

ensure_venv requirements-dev.txt
PY="$VENV/bin/python"

if ! command -v chromium >/dev/null; then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "Installing Debian's chromium for the browser tests (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } \
            || true
    fi
    command -v chromium >/dev/null \
        || echo "test.sh: chromium is not installed: the browser tests will skip (or fail with MORALE_REQUIRE_SERVICES=1)"
fi

rm -rf "$RESULTS"
mkdir -p "$RESULTS"
failures=()

# run_pass NAME PYTEST_ARGS...: one pytest run; exit status 5 (nothing collected) is fine.
run_pass() {
    local name="$1" rc=0
    shift
    echo
    echo "=== pytest, $name pass ==="
    "$PY" -m pytest --junitxml="$RESULTS/$name.xml" "$@" || rc=$?
    if ((rc != 0 && rc != 5)); then
        failures+=("$name (pytest exit status $rc)")
    fi
}

run_pass embedded "$@"

# why_down postgres|redis URL: prints why the service does not answer at URL, or nothing.
why_down() {
    "$PY" - "$@" <<'EOF'
import sys

kind, url = sys.argv[1:]
try:
    if kind == "postgres":
        import psycopg2
        psycopg2.connect(url, connect_timeout=3).close()
    else:
        import redis
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
except Exception as exc:  # any failure to connect is the reason to report
    print(f"{kind} does not answer at {url}: {' '.join(str(exc).split())}")
EOF
}

pg_down=$(why_down postgres "$DB_URL")
if [[ -z "$pg_down" ]]; then
    redis_down=$(why_down redis "$REDIS_URL")
    if [[ -n "$redis_down" ]]; then
        echo "test.sh: $redis_down (the tests that need the Redis broker will skip or fail)"
        [[ "$REQUIRE" != 1 ]] || failures+=("redis ($redis_down, MORALE_REQUIRE_SERVICES=1)")
    fi
    DATABASE_URL="$DB_URL" MORALE_TEST_BROKER_URL="$REDIS_URL" \
        run_pass postgres -m "not browser" "$@"
else
    echo
    echo "=== PostgreSQL + Redis pass SKIPPED: $pg_down ==="
    [[ "$REQUIRE" != 1 ]] || failures+=("postgres (skipped, MORALE_REQUIRE_SERVICES=1)")
fi

echo
for pass in "${failures[@]}"; do
    echo "FAILED: $pass"
done
"$PY" - "$RESULTS" <<'EOF'
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

passed = failed = skipped = 0
for report in sorted(Path(sys.argv[1]).glob("*.xml")):
    try:
        cases = list(ET.parse(report).iter("testcase"))
    except ET.ParseError as exc:
        print(f"test.sh: cannot read {report}: {exc}", file=sys.stderr)
        continue
    for case in cases:
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
EOF
((${#failures[@]} == 0))
