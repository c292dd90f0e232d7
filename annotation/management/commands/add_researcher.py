"""manage.py add_researcher USERNAME [--create]: give a user the researcher role."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.models import Annotator
from morale.roles import researcher_make


class Command(BaseCommand):
    help = (
        "Make a user a researcher (staff + the 'researcher' group: the admin, the API, exports). "
        "With --create, a new user without a password is made; set one with manage.py changepassword."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--create", action="store_true", help="create the user if it does not exist")

    def handle(self, *args, username, create, **options):
        users = get_user_model().objects
        user = users.filter(username=username).first()
        if user is None:
            if not create:
                raise CommandError(f"No user {username!r}. Add --create to make one.")
            user = users.create_user(username=username)
            self.stdout.write(f"Created {username!r} without a password: run manage.py changepassword {username}")
        elif Annotator.objects.filter(user=user).exclude(judgments=None).exists():
            raise CommandError(
                f"{username!r} is an annotator with judgments; researchers must not be annotators. Use another account."
            )
        researcher_make(user)
        self.stdout.write(self.style.SUCCESS(f"{username!r} is a researcher."))
