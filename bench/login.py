#!/usr/bin/env python
"""Where the time of signing in goes: password hashing, queries, the session, the pages after.

    .venv/bin/python bench/login.py                    # SQLite in a temporary folder, 10 rounds
    .venv/bin/python bench/login.py --repeat 3         # quick
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/helper_login_bench .venv/bin/python bench/login.py

What it measures and prints: bench/README.md, "login.py".
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: `bench` and the project importable

from bench import common  # noqa: E402
from bench.common import log  # noqa: E402

PASSWORD = "a-bench-password-42"


def setup_environment(db_url: str | None, tmp: Path) -> str:
    """The throw-away settings (``morale.settings.local``: Django's default PBKDF2 hasher) in
    this process's environment; the bench runs in-process, like a web worker."""
    if db_url is None:
        db_url = common.sqlite_url(tmp)
    os.environ.update(common.bench_env(database_url=db_url, folder=tmp, ALLOWED_HOSTS="testserver,localhost"))
    (tmp / "var" / "static").mkdir(parents=True, exist_ok=True)  # WhiteNoise warns without it
    return db_url


class Stopwatch:
    """Seconds spent inside wrapped callables and inside database queries, per category."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.queries = 0
        self.session_queries = 0

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def wrap(self, owner, attribute: str, name: str):
        original = getattr(owner, attribute)
        watch = self

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                watch.add(name, time.perf_counter() - t)

        setattr(owner, attribute, timed)
        return original

    def query(self, execute, sql, params, many, context):
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            seconds = time.perf_counter() - t
            self.queries += 1
            self.add("queries", seconds)
            if "django_session" in sql:
                self.session_queries += 1
                self.add("session queries", seconds)


@contextmanager
def watched():
    """A Stopwatch on the password hashers' verify, the session's save and every query."""
    from django.contrib.auth import hashers
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection

    watch = Stopwatch()
    patched = [
        (hashers.PBKDF2PasswordHasher, "verify", watch.wrap(hashers.PBKDF2PasswordHasher, "verify", "hashing")),
        (hashers.MD5PasswordHasher, "verify", watch.wrap(hashers.MD5PasswordHasher, "verify", "hashing")),
        (SessionStore, "save", watch.wrap(SessionStore, "save", "session save")),
    ]
    try:
        with connection.execute_wrapper(watch.query):
            yield watch
    finally:
        for owner, attribute, original in patched:
            setattr(owner, attribute, original)


def make_people() -> dict:
    """An annotator who consented (with a page to rate) and a researcher, both with PASSWORD."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from PIL import Image

    from annotation import services
    from annotation.models import Annotator
    from morale.roles import researcher_make

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 90, 160)).save(buffer, format="PNG")
    context = services.context_create(image_file=ContentFile(buffer.getvalue(), name="bench.png"), setting="a busy street")
    for text in ("holding the child's hand", "letting the child run ahead", "waiting for the green light"):
        services.scenario_create(context=context, text=text)
    User = get_user_model()
    annotator = services.annotator_create(username="bench-annotator", password=PASSWORD)
    Annotator.objects.filter(pk=annotator.pk).update(consent_version=settings.MORALE_CONSENT_VERSION, consented_at=context.created_at)
    researcher = User.objects.create_user("bench-researcher", password=PASSWORD)
    researcher_make(researcher)
    return {"annotator": "bench-annotator", "researcher": "bench-researcher", "hash": researcher.password.split("$")[0]}


def one_sign_in(username: str, *, follow_to: str) -> dict:
    """POST the login form in a fresh browser session, then GET the redirects up to `follow_to`'s
    page (the annotator's rating page or the dashboard). Seconds per part."""
    from django.test import Client

    client = Client()
    client.get("/accounts/login/")  # the form page (sets the CSRF cookie in a browser)
    with watched() as watch:
        t, cpu = time.perf_counter(), time.process_time()
        response = client.post("/accounts/login/", {"username": username, "password": PASSWORD})
        post, post_cpu = time.perf_counter() - t, time.process_time() - cpu
    assert response.status_code == 302, f"login failed for {username}: {response.status_code}"
    t = time.perf_counter()
    hops, url = 0, response.url
    while True:
        page = client.get(url)
        hops += 1
        if page.status_code != 302:
            break
        url = page.url
    after = time.perf_counter() - t
    assert page.status_code == 200 and follow_to in url, (page.status_code, url)
    return {
        "post": post,
        "post_cpu": post_cpu,
        "hashing": watch.seconds.get("hashing", 0.0),
        "queries": watch.seconds.get("queries", 0.0),
        "query_count": watch.queries,
        "session_save": watch.seconds.get("session save", 0.0),
        "session_queries": watch.session_queries,
        "after": after,
        "hops": hops,
    }


def hash_only(repeat: int) -> dict:
    """check_password with the configured hasher, outside any request."""
    from django.contrib.auth.hashers import check_password, get_hasher, make_password

    encoded = make_password(PASSWORD)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        assert check_password(PASSWORD, encoded)
        times.append(time.perf_counter() - t)
    hasher = get_hasher()
    return {"hasher": hasher.algorithm, "iterations": getattr(hasher, "iterations", None), "times": times}


def summary(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def measure(repeat: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.test import override_settings

    people = make_people()
    result = {"hash_only": hash_only(repeat), "people": people}
    one_sign_in(people["annotator"], follow_to="/annotate/")  # warm: templates, URL resolver, first queries
    result["annotator"] = [one_sign_in(people["annotator"], follow_to="/annotate/") for _ in range(repeat)]
    result["researcher"] = [one_sign_in(people["researcher"], follow_to="/research/") for _ in range(repeat)]
    # The same sign-in with the tests' fast hasher: what is left without the deliberate slowness.
    md5 = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with override_settings(PASSWORD_HASHERS=md5):
        get_user_model().objects.filter(username=people["annotator"]).update(password=make_password(PASSWORD))
        result["annotator_md5"] = [one_sign_in(people["annotator"], follow_to="/annotate/") for _ in range(repeat)]
    return result


def report(result: dict, vendor: str, load_before: str) -> None:
    hashing = result["hash_only"]
    common.print_title(
        "MORALE sign-in bench",
        f"; {vendor}; load average before {load_before}, after {common.loadavg(3)}; axes: not installed on this branch",
    )
    h = hashing["times"]
    print(f"check_password ({hashing['hasher']}, {hashing['iterations']:,} iterations): median {statistics.median(h):.3f} s, "
          f"best {min(h):.3f} s over {len(h)}")
    print()
    common.print_header(f"{'sign-in (median s)':32} {'POST':>7} {'CPU':>7} {'hashing':>8} {'queries':>8} {'n q':>4} "
                        f"{'session':>8} {'other':>7} {'pages after':>12}")
    for name, label in (("annotator", "annotator -> rating page"), ("researcher", "researcher -> /research/"),
                        ("annotator_md5", "annotator, MD5 hasher")):
        rounds = result[name]
        post, hashing_s, queries = summary(rounds, "post"), summary(rounds, "hashing"), summary(rounds, "queries")
        print(f"{label:32} {post:7.3f} {summary(rounds, 'post_cpu'):7.3f} {hashing_s:8.3f} {queries:8.4f} "
              f"{int(summary(rounds, 'query_count')):4d} {summary(rounds, 'session_save'):8.4f} "
              f"{post - hashing_s - queries:7.3f} {summary(rounds, 'after'):8.3f} ({rounds[0]['hops']} hops)")
    print("(session: SessionStore.save, its queries included in 'queries'; other: the POST minus hashing and queries)")
    annotator = result["annotator"]
    share = summary(annotator, "hashing") / summary(annotator, "post")
    print(f"password hashing is {share:.0%} of the login POST; the POST is "
          f"{summary(annotator, 'post') / (summary(annotator, 'post') + summary(annotator, 'after')):.0%} of sign-in to the first page")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db-url", default=os.environ.get("DATABASE_URL"), help="default: SQLite in a temporary folder")
    parser.add_argument("--repeat", type=int, default=10, help="sign-ins measured per kind (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the database and the temporary folder")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="morale-bench-login-"))
    db_url = setup_environment(args.db_url, tmp)
    postgres = db_url.startswith("postgres")
    load_before = common.loadavg(3)
    try:
        if postgres:
            common.pg_recreate(common.pg_url_for(db_url, "postgres"), common.pg_db_name(db_url))
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", "--noinput", verbosity=0, stdout=io.StringIO())
        log(f"migrated {connection.vendor}; measuring {args.repeat} sign-ins of each kind")
        result = measure(args.repeat)
        vendor = connection.vendor
    except Exception as exc:  # noqa: BLE001 - a bench reports and exits
        return common.could_not_run(exc)
    finally:
        from django.db import connections

        connections.close_all()
        common.clean_up(
            tmp,
            keep=args.keep,
            server_url=common.pg_url_for(db_url, "postgres") if postgres else "",
            dbname=common.pg_db_name(db_url) if postgres else "",
        )
    report(result, vendor, load_before)
    common.save_results("login", {"load_before": load_before, "load_after": common.loadavg(3), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
