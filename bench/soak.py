"""Soak test: the README's embedded stack (./scripts/run.sh: web + worker + beat) under a
crowd for a long time, with bursts of exports and training runs, and (``--faults``, on
private PostgreSQL + Redis servers) a killed worker, a stopped Redis, a restarted
PostgreSQL and a killed gunicorn worker. It then checks that no process stayed dead, no
acknowledged judgment was lost or stored twice, every scenario got a score, and nothing
answered 5xx except 503s inside a fault window. Details: bench/README.md, "soak.py".

    python bench/soak.py                       # 30 minutes, 12 annotators, embedded default
    python bench/soak.py --minutes 5 --annotators 4
    python bench/soak.py --faults --minutes 12 # PostgreSQL + Redis of its own, faults injected
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` importable when run as a file

from bench import common  # noqa: E402
from bench.loadtest.pages import RE_CSRF, fill_check_form, fill_rating_form, parse_form  # noqa: E402
from bench.loadtest.server import free_port  # noqa: E402

PASSWORD = "soak-password-1"
USER_PREFIX = "soak-"
RE_PAGE = re.compile(r"^/annotate/(\d+)/(review/|check/|add/)?$")
ADD_TEXTS = ("asking the owner before touching anything", "calling for help right away",
             "walking away without a word", "taking a photo of it to share online",
             "offering to carry the heavy bag", "laughing at the person who fell")


# --- the simulated crowd -----------------------------------------------------------------------
class Annotator(threading.Thread):
    """One person at a browser: logs in, consents, rates, answers checks, sometimes adds a
    scenario; on 503 or a refused connection waits and tries again, like a person would.
    Records every response (time, status, step) and every acknowledged submit."""

    def __init__(self, idx: int, base: str, stop: threading.Event, seed: int):
        super().__init__(daemon=True)
        import httpx

        self.username = f"{USER_PREFIX}{idx}"
        self.client = httpx.Client(base_url=base, timeout=httpx.Timeout(60.0), follow_redirects=False)
        self.rng = random.Random(seed * 1000 + idx)
        self.stop = stop
        self.responses: list[tuple[float, str, str]] = []  # (time, status or error, step)
        self.pages: dict[int, list[int]] = {}  # acknowledged rating pages: assignment id -> scenario ids
        self.checks: set[int] = set()  # acknowledged check answers: initial judgment ids
        self.added = 0

    def request(self, step: str, method: str, url: str, data=None):
        """One request; retried while the server is away (503, refused) until it answers or we stop."""
        while not self.stop.is_set():
            try:
                response = self.client.request(method, url, data=data)
            except Exception as exc:  # noqa: BLE001 - a refused or cut connection is an observation
                self.responses.append((time.time(), type(exc).__name__, step))
                time.sleep(1.0)
                continue
            self.responses.append((time.time(), str(response.status_code), step))
            if response.status_code == 503:
                time.sleep(float(response.headers.get("Retry-After", "5")))
                continue  # the outage page keeps what was sent: send it again, as it does
            return response
        return None

    def location(self, response) -> str:
        loc = response.headers.get("location", "")
        return "/" + loc.split("/", 3)[3] if loc.startswith("http") else loc

    def run(self) -> None:
        try:
            self.login()
            url = "/annotate/"
            while not self.stop.is_set() and url:
                url = self.step(url)
        except Exception as exc:  # noqa: BLE001 - a crash of the simulator is reported, not hidden
            self.responses.append((time.time(), f"crash {type(exc).__name__}: {exc}"[:200], "simulator"))
        finally:
            self.client.close()

    def login(self) -> None:
        page = self.request("login page", "GET", "/accounts/login/")
        csrf = RE_CSRF.search(page.text).group(1)
        self.request("login", "POST", "/accounts/login/",
                     {"username": self.username, "password": PASSWORD, "csrfmiddlewaretoken": csrf})

    def post_form(self, step: str, url: str, html: str, fields: dict):
        csrf = RE_CSRF.search(html)
        if csrf:
            fields.setdefault("csrfmiddlewaretoken", csrf.group(1))
        return self.request(step, "POST", url, fields)

    def step(self, url: str) -> str | None:
        """Do what the page at `url` asks and return where the browser goes next."""
        response = self.request(url, "GET", url)
        if response is None:
            return None
        if response.status_code in (301, 302):
            return self.location(response) or "/annotate/"
        html, path = response.text, url.split("?")[0]
        if path.startswith("/finish/"):
            time.sleep(5 + self.rng.random() * 5)  # nothing left: new scenarios may come
            return "/annotate/"
        match = RE_PAGE.match(path)
        if match and match.group(2) is None and 'id="rating-form"' in html:
            time.sleep(self.rng.uniform(2, 6))  # reading and choosing
            fields, scenario_ids = fill_rating_form(html, self.rng)
            answer = self.post_form("rate", path, html, fields)
            if answer is not None and answer.status_code == 302:
                self.pages[int(match.group(1))] = scenario_ids
            return self.location(answer) if answer is not None and answer.status_code == 302 else "/annotate/"
        if 'id="check-form"' in html:
            time.sleep(self.rng.uniform(1, 3))
            fields, judgment_ids = fill_check_form(html, self.rng)
            answer = self.post_form("check", path, html, fields)
            if answer is not None and answer.status_code == 302:
                self.checks.update(judgment_ids)
                return self.location(answer)
            return "/annotate/"
        if match and match.group(2) == "add/":
            if self.rng.random() < 0.3:
                text = f"{self.rng.choice(ADD_TEXTS)} ({self.username}, {self.added})"
                answer = self.post_form("add", path, html, {"text": text})
                self.added += answer is not None and answer.status_code == 302
            else:
                answer = self.post_form("add skip", path, html, {"action": "skip"})
            return self.location(answer) if answer is not None else "/annotate/"
        if path.startswith("/accounts/login/"):
            self.login()  # the session ended (a restart): sign in again, as a person would
            return "/annotate/"
        main = html.split("<main", 1)[-1].split("</main>", 1)[0]  # the header holds the log-out form
        if response.status_code == 200 and "<form" in main:
            # Any other step (consent, instructions, practice): tick every box, choose the first
            # option of every question, and send it.
            html = main
            fields, radios, _ = parse_form(html)
            for name, values in radios.items():
                fields.setdefault(name, values[0])
            for box in re.findall(r'<input[^>]*type="checkbox"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', html):
                fields.setdefault(*box)
            action = re.search(r'<form[^>]*method="post"[^>]*action="([^"]*)"', html)
            csrf = RE_CSRF.search(response.text)  # the page's token, wherever the form put it
            if csrf:
                fields.setdefault("csrfmiddlewaretoken", csrf.group(1))
            answer = self.post_form(path.strip("/") or "start", action.group(1) if action and action.group(1) else path,
                                    html, fields)
            return self.location(answer) if answer is not None and answer.status_code == 302 else path
        onward = re.search(r'<a class="button primary" href="([^"]+)"', main)
        if onward:  # a page that only leads on (practice feedback): follow its button
            return onward.group(1)
        time.sleep(2)  # a waiting page (score still missing) polls by itself
        return url


# --- servers of its own for --faults ---------------------------------------------------------------
class PrivatePostgres:
    """A throw-away PostgreSQL cluster (run as the postgres user) that may be restarted at will."""

    def __init__(self, folder: Path):
        self.bin = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1])
        self.data, self.port = folder / "pgdata", free_port()
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "postgres")
        self._as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"])
        self.ctl("start")
        self._as_postgres([str(self.bin / "createdb"), "-h", str(folder), "-p", str(self.port), "-U", "postgres", "soak"])
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/soak"

    def _as_postgres(self, args: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=120)

    def ctl(self, action: str) -> None:
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "-l",
                           str(self.data.parent / "pg.log"), "-o", f"-p {self.port} -k {self.data.parent}", action])


class PrivateRedis:
    def __init__(self, folder: Path):
        self.port, self.folder, self.proc = free_port(), folder, None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.folder)], stdout=subprocess.DEVNULL)
        time.sleep(0.5)

    def stop(self) -> None:
        common.stop_process(self.proc, timeout=10)


# --- the run -------------------------------------------------------------------------------------
def pid_of(var: Path, name: str) -> int | None:
    try:
        return int((var / "run" / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None


def django_script(env: dict, code: str) -> dict:
    """Run `code` (which prints one JSON line last) in a Django process on the soak database."""
    return common.run_json([common.PY, "-c", "import django; django.setup()\n" + code], env, "soak script")


SETUP = """
import json
from django.core.files.base import ContentFile
from annotation import services
from annotation.models import Annotator, Context
from django.contrib.auth import get_user_model
from django.conf import settings
from django.utils import timezone
from rest_framework.authtoken.models import Token
from morale.roles import researcher_make
import io
from PIL import Image
def png_bytes(color):
    buffer = io.BytesIO()
    Image.new("RGB", (96, 72), color).save(buffer, format="PNG")
    return buffer.getvalue()
n, contexts = {n}, {contexts}
for i in range(n):
    a = services.annotator_create(username=f"{prefix}{{i}}", password="{password}")
    Annotator.objects.filter(pk=a.pk).update(consent_version=settings.MORALE_CONSENT_VERSION, consented_at=timezone.now())
for i in range(contexts):
    c = services.context_create(image_file=ContentFile(png_bytes(color=(i % 255, 60, 160)), name=f"soak{{i}}.png"),
                                setting=f"soak setting number {{i}}")
    for k, text in enumerate(["helping a stranger carry groceries", "shouting at a waiter", "returning a lost wallet",
                              "cutting in line at the pharmacy"][: 3 + i % 2]):
        services.scenario_create(context=c, text=f"{{text}} (place {{i}})")
user = get_user_model().objects.create_user("soak-researcher", password="{password}", is_staff=True)
researcher_make(user)
print(json.dumps({{"token": Token.objects.create(user=user).key}}))
"""

CHECK = """
import json
from annotation.models import Assignment, Judgment, Scenario
from modelloop.models import Prediction, ModelVersion
acked = json.loads({acked!r})
lost = duplicated = 0
for page, scenario_ids in acked["pages"].items():
    rows = list(Judgment.objects.filter(assignment_id=int(page), phase="initial").values_list("scenario_id", flat=True))
    lost += len(set(scenario_ids) - set(rows))
    duplicated += len(rows) - len(set(rows))
checks = Judgment.objects.filter(revises_id__in=acked["checks"]).values_list("revises_id", flat=True)
version = ModelVersion.objects.get(is_current=True)
active = Scenario.objects.filter(is_retired=False, context__is_active=True)
print(json.dumps({{
    "judgments_acknowledged": sum(len(v) for v in acked["pages"].values()),
    "judgments_lost": lost, "judgments_duplicated": duplicated,
    "checks_acknowledged": len(acked["checks"]), "checks_lost": len(set(acked["checks"]) - set(checks)),
    "checks_duplicated": len(checks) - len(set(checks)),
    "judgments_stored": Judgment.objects.count(),
    "scenarios": active.count(),
    "unscored_scenarios": active.exclude(predictions__model_version=version).count(),
    "current_version": version.name,
}}))
"""


def burst(base: str, token: str, stop: threading.Event, every: float, log: list) -> None:
    """Every `every` seconds: three exports and two training runs through the API, as a researcher would."""
    import httpx

    client = httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Token {token}"})
    while not stop.wait(every):
        for kind, url, body in [("export", "/api/v1/exports/", {"format": "jsonl"})] * 3 + [
            ("training", "/api/v1/training-runs/", {"config": {"epochs": 1}})
        ] * 2:
            try:
                log.append((time.time(), str(client.post(url, json=body).status_code), kind))
            except Exception as exc:  # noqa: BLE001
                log.append((time.time(), type(exc).__name__, kind))


def inject_faults(var: Path, pg: PrivatePostgres, redis: PrivateRedis, stop: threading.Event, minutes: float,
                  windows: list) -> None:
    """Four faults spread over the run, each recorded as (name, start, end) with 20 s of grace."""
    schedule = [("worker SIGKILL", 0.15), ("Redis down 30 s", 0.35), ("PostgreSQL restart", 0.55),
                ("gunicorn worker SIGKILL", 0.75)]
    began = time.time()
    for name, at in schedule:
        if stop.wait(max(0.0, began + at * minutes * 60 - time.time())):
            return
        start = time.time()
        if name == "worker SIGKILL" and pid_of(var, "worker"):
            os.killpg(pid_of(var, "worker"), signal.SIGKILL)
        elif name == "Redis down 30 s":
            redis.stop()
            time.sleep(30)
            redis.start()
        elif name == "PostgreSQL restart":
            pg.ctl("restart")
        elif name == "gunicorn worker SIGKILL":
            children = subprocess.run(["pgrep", "-P", str(pid_of(var, "web"))], capture_output=True, text=True)
            if children.stdout.split():
                os.kill(int(children.stdout.split()[0]), signal.SIGKILL)
        windows.append((name, start, time.time() + 20))
        common.log(f"fault injected: {name}", stamp="soak")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--annotators", type=int, default=12)
    ap.add_argument("--contexts", type=int, default=300, help="contexts (3-4 scenarios each) besides the demo data")
    ap.add_argument("--burst-every", type=float, default=120.0, help="seconds between bursts of export/training POSTs")
    ap.add_argument("--faults", action="store_true", help="private PostgreSQL + Redis, and inject faults")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = ap.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="morale-soak-"))
    os.chmod(folder, 0o755)  # the private PostgreSQL runs as the postgres user
    var, port = folder / "var", free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE",
                                                          "SECRET_KEY", "DEBUG")}
    env.update(MORALE_VAR_DIR=str(var), MORALE_PORT=str(port), PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING",
               PYTHONPATH=str(common.ROOT))
    pg = redis = None
    if a.faults:
        pg, redis = PrivatePostgres(folder / "pg"), PrivateRedis(folder)
        env.update(DATABASE_URL=pg.url, CELERY_BROKER_URL=redis.url)
    load_at_start = common.loadavg(3)
    common.log(f"soak in {folder} on {base}, load average {load_at_start}", stamp="soak")
    run_log = open(folder / "run.sh.log", "w+")
    stack = subprocess.Popen(["./scripts/run.sh"], cwd=common.ROOT, env=env, stdout=run_log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 900
        while "MORALE is running at" not in Path(run_log.name).read_text():
            if stack.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"run.sh did not start; see {run_log.name}")
            time.sleep(1)
        script_env = {**env, "DJANGO_SETTINGS_MODULE": "morale.settings.local",
                      "SECRET_KEY": (var / "secret_key").read_text().strip()}
        token = django_script(script_env, SETUP.format(n=a.annotators, contexts=a.contexts, prefix=USER_PREFIX,
                                                       password=PASSWORD))["token"]
        common.log(f"{a.annotators} annotators, {a.contexts} contexts; running for {a.minutes} min", stamp="soak")

        stop, windows, bursts = threading.Event(), [], []
        crowd = [Annotator(i, base, stop, a.seed) for i in range(a.annotators)]
        helpers = [threading.Thread(target=burst, args=(base, token, stop, a.burst_every, bursts), daemon=True)]
        if a.faults:
            helpers.append(threading.Thread(target=inject_faults, args=(var, pg, redis, stop, a.minutes, windows),
                                            daemon=True))
        for thread in crowd + helpers:
            thread.start()
        stop.wait(a.minutes * 60)
        stop.set()
        for thread in crowd + helpers:
            thread.join(timeout=120)

        acked = {"pages": {str(k): v for p in crowd for k, v in p.pages.items()},
                 "checks": sorted(j for p in crowd for j in p.checks)}
        for _ in range(60):  # let the worker finish scoring what was added last
            result = django_script(script_env, CHECK.format(acked=json.dumps(acked)))
            if result["unscored_scenarios"] == 0:
                break
            time.sleep(5)
        processes_alive = {name: bool(pid_of(var, name)) and os.path.exists(f"/proc/{pid_of(var, name)}")
                           for name in ("web", "worker", "beat")}
    finally:
        os.killpg(stack.pid, signal.SIGINT)  # Ctrl-C: run.sh stops its three processes
        try:
            stack.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
        if redis:
            redis.stop()
        if pg:
            try:
                pg.ctl("stop")
            except subprocess.CalledProcessError:
                pass

    supervisor = (var / "log" / "supervisor.log").read_text() if (var / "log" / "supervisor.log").exists() else ""
    deaths = Counter(m.group(1) for m in re.finditer(r"run\.sh: (\w+) \(pid \d+\) exited", supervisor))
    restarts = Counter(m.group(1) for m in re.finditer(r"run\.sh: started (\w+) again", supervisor))
    responses = [r for p in crowd for r in p.responses] + bursts

    def window_of(t: float) -> str | None:
        return next((name for name, start, end in windows if start <= t <= end), None)

    codes = defaultdict(Counter)  # fault window (or "outside faults") -> status -> count
    bad = Counter()
    for t, status, step in responses:
        window = window_of(t)
        codes[window or "outside faults"][status] += 1
        is_5xx = status.isdigit() and status.startswith("5")
        if (is_5xx and (status != "503" or window is None)) or (not status.isdigit() and window is None):
            bad[f"{status} on {step}"] += 1
    report = {
        "minutes": a.minutes, "annotators": a.annotators, "faults": a.faults, "load_average_at_start": load_at_start,
        "load_average_at_end": common.loadavg(3), **result,
        "process_deaths": dict(deaths), "process_restarts": dict(restarts), "processes_alive_at_end": processes_alive,
        "scenarios_added_by_annotators": sum(p.added for p in crowd),
        "status_codes": {k: dict(v) for k, v in codes.items()}, "unexpected": dict(bad),
        "requests_by_step": dict(Counter(re.sub(r"\d+", "N", step) for _, _, step in responses).most_common(12)),
        "faults_injected": [name for name, _, _ in windows],
    }
    ok = (result["judgments_lost"] == result["judgments_duplicated"] == result["checks_lost"] == 0
          and result["unscored_scenarios"] == 0 and not bad and all(processes_alive.values())
          and all(restarts[name] >= deaths[name] for name in deaths))
    print(json.dumps(report, indent=2))
    common.save_results("soak", report)
    print(f"soak: {common.verdict(ok)}")
    if not a.keep:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"kept {folder}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
