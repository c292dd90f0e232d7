"""The researchers' dashboard (/research/) and quality page (annotation.research.views and
.dashboard): who may see them, that every figure is drawn with a title and carries its
numbers in a data table, and that the figures behind them are JSON and cached."""

import json
import math
import re
from html import unescape

import pytest
from django.core.cache import cache
from django.urls import reverse

from annotation import services
from annotation.models import Annotator, Judgment
from annotation.research import agreement, dashboard
from morale.roles import researcher_make
from modelloop.models import ModelVersion
from tests.annotation.research.builders import K2011, judge, k2011_matrix, rated
from tests.factories import AnnotatorFactory, UserFactory, make_context

pytestmark = pytest.mark.django_db

CHART_IDS = [
    "ratings", "shifts", "shifts-by-label", "alpha", "modality-agreement", "disagreement-days",
    "disagreement-versions", "model-metrics", "quality-flags", "canary-rates", "progress",
]


@pytest.fixture(autouse=True)
def fresh_cache(settings):
    settings.MORALE_DASHBOARD_CACHE_SECONDS = 0
    cache.clear()
    yield
    cache.clear()


def researcher_client(client):
    user = UserFactory()
    researcher_make(user)
    client.force_login(user)
    return client


def some_data():
    context = make_context("a kitchen")
    scenarios = [
        services.scenario_create(context=context, text=f"action {k}", text_only_label=label)
        for k, label in enumerate([1, 0, -1])
    ]
    rows = [[(5, "text"), (3, "image"), (1, "both")], [(4, "text"), (3, "image"), (5, "image")], [(5, "image"), (2, "text"), (1, "both")]]
    annotators = [AnnotatorFactory() for _ in rows]
    for annotator, row in zip(annotators, rows):
        for scenario, (score, modality) in zip(scenarios, row):
            judge(annotator, scenario, score, modality, model_score=3.0)
    return scenarios, annotators


def table_of(html: str, chart_id: str) -> list[list[str]]:
    """The rows of a figure's data table, as text."""
    figure = re.search(rf'<figure class="chart" id="fig-{chart_id}".*?</figure>', html, re.S).group(0)
    body = re.search(r"<tbody>(.*?)</tbody>", figure, re.S).group(1)
    return [
        [unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


# --- permissions -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["annotation:dashboard", "annotation:quality"])
def test_anonymous_visitors_are_sent_to_the_login_page(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", ["annotation:dashboard", "annotation:quality"])
def test_annotators_are_refused(client, name):
    annotator = AnnotatorFactory()
    client.force_login(annotator.user)
    assert client.get(reverse(name)).status_code == 403


@pytest.mark.parametrize("name", ["annotation:dashboard", "annotation:quality"])
def test_researchers_get_the_pages_and_other_staff_do_not(client, name):
    assert researcher_client(client).get(reverse(name)).status_code == 200
    client.logout()
    client.force_login(UserFactory(is_staff=True))  # staff outside the researcher group
    assert client.get(reverse(name)).status_code == 403
    client.logout()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert client.get(reverse(name)).status_code == 200


def test_dashboard_url():
    assert reverse("annotation:dashboard") == "/research/"
    assert reverse("annotation:quality") == "/research/quality/"


# --- the figures ----------------------------------------------------------------------------------
def test_an_empty_study_renders_every_figure_with_its_table(client):
    html = researcher_client(client).get(reverse("annotation:dashboard")).content.decode()
    for chart_id in CHART_IDS:
        assert f'id="fig-{chart_id}"' in html, chart_id
    figures = re.findall(r'<figure class="chart".*?</figure>', html, re.S)
    assert len(figures) == len(CHART_IDS)
    assert all("<summary>Data table:" in f and ("No data yet" in f or "<svg" in f) for f in figures)


def test_every_figure_has_a_title_an_svg_and_a_data_table(client):
    some_data()
    ModelVersion.objects.create(
        name="head-x", scorer="efficientnet-minilm-mlp", metrics={"test": {"ndcg@5": 0.8, "kendall_tau_b": 0.5}}
    )
    Annotator.objects.filter(pk=AnnotatorFactory().pk).update(quality={"flags": [{"code": "too_fast", "message": "m"}]})
    html = researcher_client(client).get(reverse("annotation:dashboard")).content.decode()
    for chart_id in CHART_IDS:
        figure = re.search(rf'<figure class="chart" id="fig-{chart_id}".*?</figure>', html, re.S).group(0)
        assert '<svg class="chart-svg"' in figure and 'role="img"' in figure, chart_id
        assert f'<title id="{chart_id}-title">' in figure and f'<desc id="{chart_id}-desc">' in figure, chart_id
        assert "<details" in figure and "<table>" in figure and "<summary>Data table:" in figure, chart_id
    assert "<script" not in html and "http://" not in html and "https://" not in html  # nothing from a CDN


def test_ratings_figure_matches_hand_counts(client):
    some_data()
    html = researcher_client(client).get(reverse("annotation:dashboard")).content.decode()
    # text: 5, 4, 2; image: 3, 3, 5, 5; both: 1, 1
    assert table_of(html, "ratings") == [
        ["1", "0", "0", "2"],
        ["2", "1", "0", "0"],
        ["3", "0", "2", "0"],
        ["4", "1", "0", "0"],
        ["5", "1", "2", "0"],
    ]
    figure = re.search(r'<figure class="chart" id="fig-ratings".*?</svg>', html, re.S).group(0)
    heights = {
        unescape(title): float(h)
        for h, title in re.findall(r'<rect [^>]*height="([\d.]+)"[^>]*><title>([^<]+)</title>', figure)
    }
    assert heights["5, image: 2"] == pytest.approx(2 * heights["5, text: 1"])
    assert heights["1, both: 2"] == heights["5, image: 2"]


def test_shift_and_agreement_tables_match_hand_counts(client):
    some_data()
    html = researcher_client(client).get(reverse("annotation:dashboard")).content.decode()
    # label +1 (-> 5): mean 14/3, majority text -> neutral; label 0 (-> 3): mean 8/3, image -> neutral;
    # label -1 (-> 1): mean 7/3, both (2 of 3) -> +1.33 more acceptable
    assert table_of(html, "shifts") == [
        ["text", "0", "1", "0", "0"],
        ["image", "0", "1", "0", "0"],
        ["both", "1", "0", "0", "0"],
    ]
    # modality agreement: text 2/3, image 2/3, both 2/3
    assert [row[:2] for row in table_of(html, "modality-agreement")] == [["text", "66.7%"], ["image", "66.7%"], ["both", "66.7%"]]
    alpha = agreement.krippendorff_alphas()["overall"]
    assert table_of(html, "alpha")[0][:2] == ["overall", f"{alpha['interval']:.3f}"]


def test_dashboard_bundle_is_json_and_cached(settings, django_assert_num_queries):
    settings.MORALE_DASHBOARD_CACHE_SECONDS = 60
    cache.clear()
    rated(k2011_matrix(), labels=[1, 0, -1] * 4)
    bundle = dashboard.dashboard_bundle()
    assert json.loads(json.dumps(bundle)) == bundle
    assert round(bundle["alpha"]["overall"]["interval"], 3) == 0.849
    assert bundle["ratings"]["total"] == sum(1 for row in K2011 for v in row if not math.isnan(v))
    with django_assert_num_queries(0):
        assert dashboard.dashboard_bundle() == bundle
    judge(AnnotatorFactory(), Judgment.objects.first().scenario, 5)
    assert dashboard.dashboard_bundle(use_cache=False)["ratings"]["total"] == bundle["ratings"]["total"] + 1
    cache.clear()



def test_quality_page_lists_flagged_annotators_and_items_with_text_escaped(client):
    context = make_context()
    nasty = services.scenario_create(context=context, text='<script>alert("x")</script> shove the child')
    calm = services.scenario_create(context=context, text="hold the hand")
    raters = [AnnotatorFactory() for _ in range(3)]
    for rater, (a, b) in zip(raters, [(1, 4), (5, 4), (3, 5)]):
        judge(rater, nasty, a, "text")
        judge(rater, calm, b, "text")
    services.annotator_pause(raters[0], by=None, reasons=["away for a week"])
    html = researcher_client(client).get(reverse("annotation:quality")).content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; shove the child" in html
    assert "hold the hand" not in html  # sd 0.577: not flagged
    assert raters[0].user.username in html and "away for a week" in html
    assert "1 of 2 rated scenarios" in html
