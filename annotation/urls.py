from django.urls import include, path

from . import views

app_name = "annotation"

urlpatterns = [
    path("", views.start, name="start"),
    path("consent/", views.consent, name="consent"),
    path("instructions/", views.instructions, name="instructions"),
    path("practice/", views.practice, name="practice"),
    path("annotate/", views.next_page, name="next"),
    path("annotate/<int:assignment_id>/", views.rate, name="rate"),
    path("annotate/<int:assignment_id>/report/", views.report_item, name="report"),
    path("annotate/<int:assignment_id>/review/", views.review, name="review"),
    path("annotate/<int:assignment_id>/check/", views.check, name="check"),
    path("annotate/<int:assignment_id>/add/", views.add_scenario, name="add"),
    path("annotate/checks/", views.late_checks, name="late_checks"),
    path("finish/", views.finish, name="finish"),
    path("enter/", views.crowd_entry, name="crowd_entry"),
    path("accounts/signup/", views.signup, name="signup"),
    # The researchers' dashboard and quality list: annotation:dashboard, annotation:quality.
    path("research/", include("annotation.research.urls")),
]
