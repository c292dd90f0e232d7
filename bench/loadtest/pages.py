"""The annotator pages as a client sees them: their URLs, and their forms filled in like a person would.

Imported by bench.loadtest.clients, .profiling and .server.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict

RE_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
RE_ERROR = re.compile(r'class="error"[^>]*>([^<]+)<')
RE_FORM = re.compile(r"<form\b[^>]*>(.*?)</form>", re.S)
RE_INPUT = re.compile(r"<input\b([^>]*)>")
RE_SELECT = re.compile(r"<select\b([^>]*)>(.*?)</select>", re.S)
RE_OPTION = re.compile(r"<option\b([^>]*)>")
RE_ATTR = re.compile(r'([\w-]+)(?:="([^"]*)")?')
RE_RATE = re.compile(r"^/annotate/(\d+)/$")
RE_REVIEW = re.compile(r"^/annotate/(\d+)/review/$")
RE_CHECK = re.compile(r"^/annotate/(\d+)/check/$")
RE_ADD = re.compile(r"^/annotate/(\d+)/add/$")


def _attrs(tag: str) -> dict[str, str]:
    return {k: v for k, v in RE_ATTR.findall(tag)}


def parse_form(html: str, form_id: str | None = None):
    """What a browser would send from a form, before the user clicks anything.

    Returns (fields, radios, selects): fields = hidden/text inputs and pre-checked radios;
    radios = {name: [values]}; selects = {name: [values]} (fields holds the selected one).
    """
    if form_id:
        m = re.search(rf'<form\b[^>]*id="{form_id}"[^>]*>(.*?)</form>', html, re.S)
    else:
        m = RE_FORM.search(html)
    body = m.group(1) if m else html
    fields, radios, selects = {}, defaultdict(list), {}
    for tag in RE_INPUT.findall(body):
        a = _attrs(tag)
        name, kind = a.get("name"), a.get("type", "text")
        if not name:
            continue
        if kind == "radio":
            radios[name].append(a.get("value", "on"))
            if "checked" in a:
                fields[name] = a.get("value", "on")
        elif kind == "checkbox":
            if "checked" in a:
                fields[name] = a.get("value", "on")
        elif kind not in ("submit", "button", "file"):
            fields[name] = a.get("value", "")
    for tag, inner in RE_SELECT.findall(body):
        name = _attrs(tag).get("name")
        if not name:
            continue
        options = [_attrs(o) for o in RE_OPTION.findall(inner)]
        selects[name] = [o.get("value", "") for o in options]
        chosen = next((o for o in options if "selected" in o), options[0] if options else None)
        if chosen is not None:
            fields[name] = chosen.get("value", "")
    return fields, dict(radios), selects


def fill_rating_form(html: str, rng: random.Random) -> tuple[dict, list[int]]:
    """The rating form with every scenario answered: a random score 1-5 and a random modality."""
    fields, radios, _ = parse_form(html, "rating-form")
    sids = []
    for name, values in radios.items():
        if name.startswith("score-"):
            sids.append(int(name[6:]))
        fields[name] = rng.choice(values)
    return fields, sids


def fill_check_form(html: str, rng: random.Random, revise_rate: float = 0.3) -> tuple[dict, list[int]]:
    """The grounding-check form answered like a person would: keep (the score select stays
    as it was rendered) or revise (pick another score), and a modality."""
    fields, radios, selects = parse_form(html, "check-form")
    jids = []
    for name, values in radios.items():
        if name.startswith("decision-"):
            jid = name[9:]
            jids.append(int(jid))
            revise = rng.random() < revise_rate and "revise" in values
            fields[name] = "revise" if revise else "keep"
            if revise and f"score-{jid}" in selects:
                fields[f"score-{jid}"] = rng.choice(selects[f"score-{jid}"])
        else:
            fields[name] = rng.choice(values)
    return fields, jids
