"""The researchers' figures and pages: agreement, quality control, the dashboard (docs/research-figures.md).
Only this package in annotation may read training and modelloop.models; annotation's urls, admin and tasks import it."""
