"""The simulated annotators: threads with an httpx.Client each, spread over client processes.

Imported by bench/annotate_load.py.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
import traceback
import uuid
from collections import defaultdict

from bench.loadtest.content import ACTIONS, PASSWORD, USER_PREFIX
from bench.loadtest.pages import RE_ADD, RE_CHECK, RE_CSRF, RE_ERROR, RE_RATE, RE_REVIEW, fill_check_form, fill_rating_form


class Stop(Exception):
    pass


class SimAnnotator:
    """One simulated annotator: a thread with its own httpx.Client (cookies = its session)."""

    def __init__(self, idx, base, cfg, go, deadline_box):
        import httpx

        self.idx = idx
        self.username = f"{USER_PREFIX}{idx}"
        self.base = base
        self.cfg = cfg
        self.rng = random.Random(cfg["seed"] * 1000 + idx)
        self.double = idx in cfg["double_clickers"]
        self.client = httpx.Client(base_url=base, timeout=httpx.Timeout(120.0), follow_redirects=False)
        self.lat = defaultdict(list)  # step -> [ms]
        self.errors = defaultdict(int)  # step/kind -> count
        self.pages: list[tuple[str, str, list[int]]] = []  # acknowledged submits
        self.checks: list[int] = []  # acknowledged grounding-check answers (initial judgment ids)
        self.added = 0
        self.waits = 0
        self.submits = 0
        self.finished = False
        self.go = go
        self.deadline_box = deadline_box
        self.logged_in = False

    # -- plumbing --
    def _deadline_passed(self) -> bool:
        d = self.deadline_box.get("deadline")
        return d is not None and time.time() >= d

    def req(self, step, method, url, data=None, *, expect=(200, 302), check_deadline=True):
        if check_deadline and self.logged_in and self._deadline_passed():
            raise Stop()
        t = time.perf_counter()
        try:
            r = self.client.request(method, url, data=data)
        except Exception as exc:  # noqa: BLE001
            self.errors[f"{step}: {type(exc).__name__}"] += 1
            raise
        self.lat[step].append((time.perf_counter() - t) * 1000.0)
        if r.status_code not in expect:
            m = RE_ERROR.search(r.text) if r.status_code >= 400 else None
            why = f" ({' '.join(m.group(1).split())[:120]})" if m else ""
            self.errors[f"{step}: HTTP {r.status_code}{why}"] += 1
        return r

    @staticmethod
    def location(r) -> str:
        loc = r.headers.get("location", "")
        if loc.startswith("http"):
            loc = "/" + loc.split("/", 3)[3]
        return loc

    # -- flow --
    def login(self):
        r = self.req("login page", "GET", "/accounts/login/", check_deadline=False)
        csrf = RE_CSRF.search(r.text).group(1)
        r = self.req(
            "login",
            "POST",
            "/accounts/login/",
            {"username": self.username, "password": PASSWORD, "csrfmiddlewaretoken": csrf, "next": "/"},
            expect=(302,),
            check_deadline=False,
        )
        if r.status_code != 302:
            raise RuntimeError(f"{self.username}: login failed (HTTP {r.status_code})")
        self.logged_in = True

    def run(self):
        try:
            self.login()
        except Exception as exc:  # noqa: BLE001
            self.errors[f"login: {exc}"] += 1
            self.ready()
            return
        self.ready()
        self.go.wait()
        try:
            self.think(first=True)
            self.loop()
        except Stop:
            pass
        except Exception:  # noqa: BLE001
            self.errors["crash: " + traceback.format_exc(limit=3).replace("\n", " | ")[-300:]] += 1
        finally:
            self.client.close()

    def ready(self):
        self.deadline_box["ready"]()

    def loop(self):
        url = "/annotate/"
        consecutive_errors = 0
        while True:
            if self.cfg["pages"] and self.submits >= self.cfg["pages"] and url == "/annotate/":
                return
            try:
                url = self.step(url)
                consecutive_errors = 0
            except Stop:
                raise
            except Exception:  # noqa: BLE001 - network error: count it and start over
                consecutive_errors += 1
                if consecutive_errors > 20:
                    raise
                time.sleep(0.2)
                url = "/annotate/"
            if url is None:
                return

    def step(self, url: str) -> str | None:
        """Do what the page at `url` asks; return the next URL to visit (None: finished)."""
        if url == "/annotate/" or url == "/":
            r = self.req("next (redirect)", "GET", url, expect=(302,))
            return self.location(r) if r.status_code == 302 else "/annotate/"
        if url.startswith("/finish/"):
            self.req("finish page", "GET", url, expect=(200,))
            self.finished = True
            return None
        if RE_RATE.match(url):
            return self.rate(url)
        if RE_REVIEW.match(url):
            r = self.req("review (redirect)", "GET", url, expect=(200, 302))
            if r.status_code == 302:
                return self.location(r)
            # the "waiting for the model" page: poll like its meta refresh does
            self.waits += 1
            time.sleep(2.0)
            return url
        if RE_CHECK.match(url) or url == "/annotate/checks/":
            return self.check(url)
        if RE_ADD.match(url):
            return self.add(url)
        if url.startswith("/consent/"):
            self.errors["unexpected consent page"] += 1
            r = self.req("consent page", "GET", url)
            csrf = RE_CSRF.search(r.text).group(1)
            self.req("consent", "POST", url, {"agree": "yes", "csrfmiddlewaretoken": csrf})
            return "/annotate/"
        self.errors[f"unexpected URL {url[:40]}"] += 1
        time.sleep(0.2)
        return "/annotate/"

    def rate(self, url):
        r = self.req("rating page", "GET", url, expect=(200, 302))
        if r.status_code == 302:
            return self.location(r)
        data, sids = fill_rating_form(r.text, self.rng)
        token = data["page_token"]
        self.think()
        if self._deadline_passed():
            raise Stop()
        self.submits += 1
        # A stored page is answered with a redirect to the step after rating: the check,
        # the add-scenario prompt, the waiting (review) page, or the next page when done.
        acknowledged = {url + "review/", url + "check/", url + "add/", "/annotate/"}
        if self.double:
            # a double click: the same form posted twice at once
            results = [None, None]

            def second():
                try:
                    results[1] = self.req("submit (double click)", "POST", url, data, expect=(302,), check_deadline=False)
                except Exception:  # noqa: BLE001
                    pass

            th = threading.Thread(target=second)
            th.start()
            results[0] = self.req("submit", "POST", url, data, expect=(302,), check_deadline=False)  # paired with its twin
            th.join()
            answered = [x for x in results if x is not None and x.status_code == 302 and self.location(x) in acknowledged]
            r = answered[0] if answered else results[0]
        else:
            r = self.req("submit", "POST", url, data, expect=(302,))
        if r is not None and r.status_code == 302 and self.location(r) in acknowledged:
            self.pages.append((self.username, token, sids))
            return self.location(r)
        return "/annotate/"

    def think(self, first: bool = False):
        """Reading and clicking time before a form is sent (exponential, mean --think-ms);
        before the first page, a uniform 0..think delay so that clients do not arrive all
        at once. Never sleeps past the end of the load window."""
        if self.cfg["think_ms"] <= 0:
            return
        mean_s = self.cfg["think_ms"] / 1000.0
        pause = self.rng.uniform(0, mean_s) if first else self.rng.expovariate(1.0 / mean_s)
        d = self.deadline_box.get("deadline")
        if d is not None and time.time() + pause >= d:
            time.sleep(max(0.0, d - time.time()))
            raise Stop()
        time.sleep(pause)

    def check(self, url):
        step = "late checks page" if url == "/annotate/checks/" else "check page"
        r = self.req(step, "GET", url, expect=(200, 302))
        if r.status_code == 302:
            return self.location(r)
        data, jids = fill_check_form(r.text, self.rng)
        self.think()
        r = self.req("check submit", "POST", url, data, expect=(302,))
        if r.status_code == 302:
            self.checks.extend(jids)
            return self.location(r)
        return "/annotate/"

    def add(self, url):
        r = self.req("add page", "GET", url, expect=(200, 302))
        if r.status_code == 302:
            return self.location(r)
        csrf = RE_CSRF.search(r.text).group(1)
        self.think()
        if self.rng.random() < self.cfg["add_rate"]:
            text = f"bench: {self.rng.choice(ACTIONS)} ({self.username}, {uuid.uuid4().hex[:8]})"
            r = self.req(
                "add submit (add)", "POST", url, {"csrfmiddlewaretoken": csrf, "action": "add", "text": text},
                expect=(302,),
            )
            if r.status_code == 302:
                self.added += 1
        else:
            r = self.req(
                "add submit (skip)", "POST", url, {"csrfmiddlewaretoken": csrf, "action": "skip"},
                expect=(302,),
            )
        return self.location(r) if r.status_code == 302 else "/annotate/"

    def result(self) -> dict:
        return {
            "lat": dict(self.lat),
            "errors": dict(self.errors),
            "pages": self.pages,
            "checks": self.checks,
            "added": self.added,
            "waits": self.waits,
            "finished": self.finished,
        }


def client_proc(indices, base, cfg, ready_q, go_evt, deadline_value, result_q):
    """One client process: threads for its annotators; reports readiness, then results."""
    box = {}
    n_ready = [0]
    lock = threading.Lock()

    def ready():
        with lock:
            n_ready[0] += 1
            if n_ready[0] == len(indices):
                ready_q.put(os.getpid())

    box["ready"] = ready

    class Go:
        def wait(self):
            go_evt.wait()
            box["deadline"] = deadline_value.value if deadline_value.value > 0 else None

    go = Go()
    annotators = [SimAnnotator(i, base, cfg, go, box) for i in indices]
    threads = [threading.Thread(target=a.run, daemon=True) for a in annotators]
    for t in threads:
        t.start()
    go_evt.wait()
    c0 = os.times()
    for t in threads:
        t.join()
    c1 = os.times()
    cpu_ms = ((c1.user - c0.user) + (c1.system - c0.system)) * 1000.0
    result_q.put({"cpu_ms": cpu_ms, "end": time.time(), "annotators": [a.result() for a in annotators]})


def run_clients(*, base, n, procs, cfg):
    """Start the client processes, wait for every login, then release the load; gather results."""
    ctx = multiprocessing.get_context("fork")
    ready_q, result_q = ctx.Queue(), ctx.Queue()
    go_evt = ctx.Event()
    deadline_value = ctx.Value("d", 0.0)
    groups = [list(range(i, n, procs)) for i in range(procs)]
    groups = [g for g in groups if g]
    ps = [
        ctx.Process(target=client_proc, args=(g, base, cfg, ready_q, go_evt, deadline_value, result_q), daemon=True)
        for g in groups
    ]
    t_login = time.perf_counter()
    for p in ps:
        p.start()
    for _ in ps:
        ready_q.get(timeout=600)
    login_s = time.perf_counter() - t_login
    return ps, go_evt, deadline_value, result_q, login_s


def gather(results: list[dict]) -> dict:
    """The client processes' results merged: latencies and errors per step, the acknowledged
    pages and grounding checks, the counts, and the clients' CPU ms."""
    lat, errors = defaultdict(list), defaultdict(int)
    pages, checks, added, waits, finished = [], [], 0, 0, 0
    client_cpu_ms = sum(r["cpu_ms"] for r in results)
    for r in results:
        for a in r["annotators"]:
            for k, v in a["lat"].items():
                lat[k].extend(v)
            for k, v in a["errors"].items():
                errors[k] += v
            pages.extend(a["pages"])
            checks.extend(a["checks"])
            added += a["added"]
            waits += a["waits"]
            finished += int(a["finished"])
    return {"lat": lat, "errors": errors, "pages": pages, "checks": checks, "added": added, "waits": waits,
            "finished": finished, "client_cpu_ms": client_cpu_ms}
