#!/usr/bin/env bash
# Run MORALE on this machine: ./scripts/run.sh
#
# Creates .venv and installs requirements.txt when they changed, migrates the database,
# collects static files, loads the demo data, then runs three processes until Ctrl-C:
#   web     gunicorn on http://127.0.0.1:${MORALE_PORT:-8000}
#   worker  the Celery worker (queues gpu and default)
#   beat    celery beat (schedules live in the database, editable in the admin)
# Each one logs to var/log/<name>.log and to this terminal, prefixed with its name, and
# writes its pid to var/run/<name>.pid. A process that dies is started again after a
# backoff (1 s, doubling up to 60 s; back to 1 s once it has run for 2 minutes), with a
# line in the log saying so; the others keep running. Ctrl-C (or TERM) stops all three.
#
# Nothing needs configuring: the defaults are a SQLite file, a filesystem Celery broker
# and media files, all under var/. DATABASE_URL / CELERY_BROKER_URL (and every other
# setting in the README) are honoured when set.
#
# scripts/test.sh sources this file for ensure_venv; sourcing runs nothing, and
# tests/test_deployment.py sources it to compare the commands below with docker-compose.yml.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
VAR_DIR="${MORALE_VAR_DIR:-$ROOT/var}"  # the settings read MORALE_VAR_DIR too
LOG_DIR="$VAR_DIR/log"
RUN_DIR="$VAR_DIR/run"  # <name>.pid of the running processes
PORT="${MORALE_PORT:-8000}"

# The three processes. docker-compose.yml runs the same commands (bound to 0.0.0.0:8000,
# and with the two queues split over a GPU and a CPU worker); tests/test_deployment.py
# checks that they agree.
# Web: sized for 2 cores. 2 processes x 4 threads (gthread): a thread waiting on the
# database lets another run; keep-alive 5 s keeps a browser's (or a proxy's) connection
# for its next request instead of a new TCP connection per request (gthread parks idle
# keep-alive connections in its poller, not in a thread). More cores: workers = cores.
WEB_CMD=(gunicorn morale.wsgi --bind "127.0.0.1:$PORT" --workers 2 --worker-class gthread --threads 4 --keep-alive 5 --access-logfile -)
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

declare -A PIDS=()        # name -> pid of the running process ("" while waiting to restart)
declare -A STARTED_AT=()  # name -> $SECONDS when it was last started
declare -A RESTARTS=()    # name -> restarts in a row without a calm period
declare -A RESTART_AT=()  # name -> $SECONDS at which to start it again
NAMES=(web worker beat)
BACKOFF_MAX=60   # seconds between restarts, at most
CALM_SECONDS=120 # a process that ran this long before dying restarts after 1 s again

# start NAME COMMAND...: run COMMAND in the background in a session of its own, logging
# to var/log/NAME.log and to the terminal. Its own session keeps a terminal's Ctrl-C (or a
# closed terminal) away from it: this script alone decides how it stops, with one TERM.
start() {
    local name="$1"
    shift
    # The log pipe ignores INT/TERM so that it outlives the process and prints its last lines.
    setsid "$@" > >(trap '' INT TERM; tee -a "$LOG_DIR/$name.log" | sed -u "s/^/$(printf '%-6s' "$name") | /") 2>&1 &
    PIDS[$name]=$!
    STARTED_AT[$name]=$SECONDS
    echo "${PIDS[$name]}" >"$RUN_DIR/$name.pid"
}

# start_named NAME: start web, worker or beat with its command above.
start_named() {
    case "$1" in
        web) start web "${WEB_CMD[@]}" ;;
        worker) start worker "${WORKER_CMD[@]}" ;;
        beat) start beat "${BEAT_CMD[@]}" ;;
    esac
}

# supervise_once: note what has died and start it again once its backoff has passed.
supervise_once() {
    local name pid status ran delay
    for name in "${NAMES[@]}"; do
        pid=${PIDS[$name]:-}
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            status=0
            wait "$pid" 2>/dev/null || status=$?
            ran=$((SECONDS - STARTED_AT[$name]))
            ((ran < CALM_SECONDS)) || RESTARTS[$name]=0
            delay=$((1 << ${RESTARTS[$name]:-0}))
            ((delay <= BACKOFF_MAX)) || delay=$BACKOFF_MAX
            RESTARTS[$name]=$((${RESTARTS[$name]:-0} + 1))
            RESTART_AT[$name]=$((SECONDS + delay))
            PIDS[$name]=""
            rm -f "$RUN_DIR/$name.pid"
            log_supervisor "$name (pid $pid) exited with status $status after $ran s; restarting it in $delay s (restart ${RESTARTS[$name]})"
        fi
        if [[ -z "${PIDS[$name]:-}" ]] && ((SECONDS >= ${RESTART_AT[$name]:-0})); then
            start_named "$name"
            log_supervisor "started $name again (pid ${PIDS[$name]})"
        fi
    done
}

log_supervisor() {
    echo "$(date -u '+%Y-%m-%d %H:%M:%S') run.sh: $*" | tee -a "$LOG_DIR/supervisor.log" >&2
}

# stop_all: TERM every process (gunicorn and celery then stop their own children), wait up
# to 30 s, then KILL what is left of each one's process group.
stop_all() {
    local name pid deadline=$((SECONDS + 30))
    for pid in "${PIDS[@]}"; do [[ -z "$pid" ]] || kill -TERM "$pid" 2>/dev/null || true; done
    for name in "${!PIDS[@]}"; do
        pid=${PIDS[$name]}
        [[ -n "$pid" ]] || continue
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: $name did not stop within 30 s; killing it" >&2
        fi
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        rm -f "$RUN_DIR/$name.pid"
    done
    PIDS=()
    sleep 0.2  # let the log pipes print their last lines
}

# ensure_secret_key: unless SECRET_KEY is set, use (and on the first run create) a random
# key kept in var/secret_key, readable by this user only. Sessions and completion codes
# are signed with it: a key everybody knows from the source would let anyone forge them.
ensure_secret_key() {
    [[ -z "${SECRET_KEY:-}" ]] || return 0
    local file="$VAR_DIR/secret_key"
    if [[ ! -s "$file" ]]; then
        (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(50))' >"$file")
    fi
    SECRET_KEY="$(<"$file")"
    export SECRET_KEY
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
    mkdir -p "$LOG_DIR" "$VAR_DIR"

    ensure_venv requirements.txt
    export PATH="$VENV/bin:$PATH"
    ensure_secret_key


    python manage.py migrate --noinput
    python manage.py collectstatic --noinput
    python manage.py seed_demo | tee "$LOG_DIR/seed.log"

    trap 'on_signal 130' INT
    trap 'on_signal 143' TERM
    trap 'on_signal 129' HUP
    mkdir -p "$RUN_DIR"
    local name
    for name in "${NAMES[@]}"; do start_named "$name"; done

    local url="http://127.0.0.1:$PORT/" deadline=$((SECONDS + 60))
    until answers "$url"; do
        supervise_once
        if ((SECONDS >= deadline)); then
            echo "run.sh: nothing answers at $url after 60 s; see ${LOG_DIR#"$ROOT/"}/web.log" >&2
            break
        fi
        sleep 0.5
    done
    echo
    echo "MORALE is running at $url  (Ctrl-C stops it; logs in ${LOG_DIR#"$ROOT/"}/)"
    cat "$LOG_DIR/seed.log"
    echo

    # Supervise until Ctrl-C / TERM (the traps above stop everything and exit).
    while true; do
        sleep 1 &
        wait $! || true  # a background sleep lets Ctrl-C reach the trap at once
        supervise_once
    done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
