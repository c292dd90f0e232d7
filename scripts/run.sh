#!/usr/bin/env bash
# Run MORALE on this machine: ./scripts/run.sh
#
# Creates .venv and installs requirements.txt when they changed, migrates the database,
# collects static files, loads the demo data, then runs three processes until Ctrl-C:
#   web     gunicorn on http://127.0.0.1:${MORALE_PORT:-8000}
#   worker  the Celery worker (queues gpu and default)
#   beat    celery beat (schedules live in the database, editable in the admin)
# Each one logs to var/log/<name>.log and to this terminal, prefixed with its name.
# If one of them stops, the others are stopped too and the script exits non-zero.
#
# Nothing needs configuring: the defaults are a SQLite file, a filesystem Celery broker
# and media files, all under var/. DATABASE_URL / CELERY_BROKER_URL (and every other
# setting in the README) are honoured when set.
#
# scripts/test.sh sources this file for ensure_venv; sourcing runs nothing, and
# tests/test_deployment.py sources it to compare the commands below with docker-compose.yml.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
LOG_DIR="$ROOT/var/log"
PORT="${MORALE_PORT:-8000}"

# The three processes. docker-compose.yml runs the same commands (bound to 0.0.0.0:8000,
# and with the two queues split over a GPU and a CPU worker); tests/test_deployment.py
# checks that they agree.
WEB_CMD=(gunicorn morale.wsgi --bind "127.0.0.1:$PORT" --workers 2 --threads 4 --access-logfile -)
WORKER_CMD=(celery -A morale worker -Q gpu,default --concurrency 1 --loglevel INFO)
BEAT_CMD=(celery -A morale beat --loglevel INFO)

# ensure_venv REQUIREMENTS_FILE: create .venv if missing and install the file into it,
# unless .venv already holds a stamp with the sha256 of that file (and of the files it
# includes with "-r").
ensure_venv() {
    local req="$1" included hash stamp log
    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "Creating $VENV"
        python3 -m venv "$VENV" || {
            echo "error: 'python3 -m venv' failed (on Debian: apt-get install python3-venv)" >&2
            return 1
        }
    fi
    included=$(sed -n 's/^[[:space:]]*-r[[:space:]]*//p' "$ROOT/$req")
    hash=$(cd "$ROOT" && cat "$req" $included | sha256sum | cut -d' ' -f1)
    stamp="$VENV/.installed-$req.sha256"
    if [[ -f "$stamp" && "$(<"$stamp")" == "$hash" ]]; then
        return 0
    fi
    mkdir -p "$LOG_DIR"
    log="$LOG_DIR/pip-install.log"
    echo "Installing $req into .venv (the first time takes a few minutes; log: ${log#"$ROOT/"})"
    if ! (cd "$ROOT" && "$VENV/bin/python" -m pip install --disable-pip-version-check \
            --progress-bar off -r "$req") >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "error: installing $req failed; the whole log is in $log" >&2
        return 1
    fi
    echo "$hash" >"$stamp"
}

# answers URL: true when anything answers HTTP at URL (a redirect to the login, a 404).
answers() {
    "$VENV/bin/python" - "$1" <<'EOF'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
except OSError:
    sys.exit(1)
EOF
}

all_running() {
    local pid
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
}

declare -A PIDS=()  # name -> pid of the running process

# start NAME COMMAND...: run COMMAND in the background in a session of its own, logging
# to var/log/NAME.log and to the terminal. Its own session keeps a terminal's Ctrl-C (or a
# closed terminal) away from it: this script alone decides how it stops, with one TERM.
start() {
    local name="$1"
    shift
    # The log pipe ignores INT/TERM so that it outlives the process and prints its last lines.
    setsid "$@" > >(trap '' INT TERM; tee -a "$LOG_DIR/$name.log" | sed -u "s/^/$(printf '%-6s' "$name") | /") 2>&1 &
    PIDS[$name]=$!
}

# stop_all: TERM every process (gunicorn and celery then stop their own children), wait up
# to 30 s, then KILL what is left of each one's process group.
stop_all() {
    local name pid deadline=$((SECONDS + 30))
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for name in "${!PIDS[@]}"; do
        pid=${PIDS[$name]}
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: $name did not stop within 30 s; killing it" >&2
        fi
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    sleep 0.2  # let the log pipes print their last lines
}

on_signal() {
    echo
    echo "run.sh: stopping web, worker and beat"
    stop_all
    exit "$1"
}

main() {
    set -euo pipefail
    cd "$ROOT"
    # The settings make the broker and media folders; SQLite needs its folder to exist.
    mkdir -p "$LOG_DIR" "${MORALE_VAR_DIR:-$ROOT/var}"

    ensure_venv requirements.txt
    export PATH="$VENV/bin:$PATH"

    python manage.py migrate --noinput
    python manage.py collectstatic --noinput
    python manage.py seed_demo | tee "$LOG_DIR/seed.log"

    trap 'on_signal 130' INT
    trap 'on_signal 143' TERM
    trap 'on_signal 129' HUP
    start web "${WEB_CMD[@]}"
    start worker "${WORKER_CMD[@]}"
    start beat "${BEAT_CMD[@]}"

    local url="http://127.0.0.1:$PORT/" deadline=$((SECONDS + 60))
    until answers "$url"; do
        all_running || break  # the wait below reports which one stopped
        if ((SECONDS >= deadline)); then
            echo "run.sh: nothing answers at $url after 60 s; see ${LOG_DIR#"$ROOT/"}/web.log" >&2
            break
        fi
        sleep 0.5
    done
    if all_running; then
        echo
        echo "MORALE is running at $url  (Ctrl-C stops it; logs in ${LOG_DIR#"$ROOT/"}/)"
        cat "$LOG_DIR/seed.log"
        echo
    fi

    while all_running; do
        sleep 1 &
        wait $! || true  # a background sleep lets Ctrl-C reach the trap at once
    done
    local name status=0
    for name in "${!PIDS[@]}"; do
        if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
            wait "${PIDS[$name]}" || status=$?
            unset "PIDS[$name]"
            echo "run.sh: $name exited with status $status; stopping the others" >&2
            break
        fi
    done
    stop_all
    exit $((status == 0 ? 1 : status))
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
