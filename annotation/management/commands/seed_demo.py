"""``manage.py seed_demo``: load the demo contexts, scenarios, practice round and accounts.

The content lives in ``annotation/demo/content.py``; this command only writes it, always
through ``annotation.services`` so demo rows pass the same checks as real ones (image
validation and sha256, scenario cleaning, scoring queued after commit).

Idempotent: a context whose setting already exists with the same source is skipped
(with its scenarios), and so is any account whose username exists. Running it twice
creates nothing the second time and says so.
"""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotation import services
from annotation.demo.content import (
    DEMO_ACCOUNTS,
    DEMO_CONTEXTS,
    DEMO_PRACTICE,
    DEMO_PRACTICE_INTRO,
    DEMO_PRACTICE_VERSION,
    DemoAccount,
    DemoContext,
)
from annotation.models import Context, PracticeRound


class Command(BaseCommand):
    help = "Create the demo contexts, scenarios, annotators and researcher account (safe to run again)."

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        contexts_created = scenarios_created = canaries_created = contexts_skipped = 0
        for demo in DEMO_CONTEXTS:
            if Context.objects.filter(setting=demo.setting, source=demo.source).exists():
                contexts_skipped += 1
                self._detail(f"context exists, skipped: {demo.setting}")
                continue
            n_scenarios, n_canaries = self._create_context(demo)
            contexts_created += 1
            scenarios_created += n_scenarios
            canaries_created += n_canaries

        self._create_practice()

        accounts_created = accounts_skipped = 0
        for account in DEMO_ACCOUNTS:
            if get_user_model().objects.filter(username=account.username).exists():
                accounts_skipped += 1
                self._detail(f"user exists, skipped: {account.username}")
                continue
            self._create_account(account)
            accounts_created += 1

        self._print_summary(
            contexts_created=contexts_created,
            contexts_skipped=contexts_skipped,
            scenarios_created=scenarios_created,
            canaries_created=canaries_created,
            accounts_created=accounts_created,
            accounts_skipped=accounts_skipped,
        )

    # --- writing ------------------------------------------------------------------------

    def _create_context(self, demo: DemoContext) -> tuple[int, int]:
        """One context and all its scenarios, or nothing: never a context left half-seeded."""
        try:
            with transaction.atomic():
                context = services.context_create(
                    image_file=ContentFile(demo.png_bytes(), name=f"{demo.slug}.png"),
                    setting=demo.setting,
                    source=demo.source,
                    image_origin=demo.image_origin,
                )
                n_canaries = 0
                for scenario in demo.scenarios:
                    low, high = scenario.canary_range or (None, None)
                    services.scenario_create(
                        context=context,
                        text=scenario.text,
                        text_only_label=scenario.text_only_label,
                        is_canary=scenario.is_canary,
                        canary_min_score=low,
                        canary_max_score=high,
                    )
                    n_canaries += scenario.is_canary
        except ValidationError as exc:
            # Demo content is ours, so this is a bug in demo/content.py: name the culprit.
            raise CommandError(f"Demo context {demo.slug!r} was refused: {'; '.join(exc.messages)}") from exc
        self._detail(f"context created: #{context.pk} {demo.setting} ({len(demo.scenarios)} scenarios)")
        return len(demo.scenarios) - n_canaries, n_canaries

    def _create_practice(self) -> None:
        """The demo practice round (shown after the instructions), once."""
        if PracticeRound.objects.filter(version=DEMO_PRACTICE_VERSION).exists():
            self._detail(f"practice round exists, skipped: {DEMO_PRACTICE_VERSION}")
            return
        items = [
            services.PracticeItemInput(
                image_file=ContentFile(item.png_bytes(), name=f"{item.slug}.png"),
                setting=item.setting,
                text=item.text,
                min_score=item.score_range[0],
                max_score=item.score_range[1],
                modality=item.modality,
                explanation=item.explanation,
            )
            for item in DEMO_PRACTICE
        ]
        try:
            services.practice_round_create(version=DEMO_PRACTICE_VERSION, intro=DEMO_PRACTICE_INTRO, items=items)
        except ValidationError as exc:
            raise CommandError(f"The demo practice round was refused: {'; '.join(exc.messages)}") from exc
        self._detail(f"practice round created: {DEMO_PRACTICE_VERSION} ({len(items)} items)")

    def _create_account(self, account: DemoAccount) -> None:
        if account.role == "annotator":
            services.annotator_create(username=account.username, password=account.password)
        elif account.role == "researcher":
            # Researchers use the admin and the API; they are not annotators.
            get_user_model().objects.create_superuser(username=account.username, email="", password=account.password)
        else:
            raise CommandError(f"Unknown demo role {account.role!r} for {account.username!r}.")
        self._detail(f"account created: {account.username} ({account.role})")

    # --- output -------------------------------------------------------------------------

    def _detail(self, message: str) -> None:
        if self.verbosity >= 2:
            self.stdout.write(f"  {message}")

    def _print_summary(
        self,
        *,
        contexts_created,
        contexts_skipped,
        scenarios_created,
        canaries_created,
        accounts_created,
        accounts_skipped,
    ) -> None:
        if contexts_created or accounts_created:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created {contexts_created} contexts, {scenarios_created} scenarios "
                    f"+ {canaries_created} canaries, {accounts_created} accounts."
                )
            )
            if contexts_skipped or accounts_skipped:
                self.stdout.write(
                    f"Already there, skipped: {contexts_skipped} contexts, {accounts_skipped} accounts."
                )
        else:
            self.stdout.write(
                f"Nothing new: the demo data was already there "
                f"({contexts_skipped} contexts, {accounts_skipped} accounts skipped)."
            )
        self.stdout.write("Demo logins (demo only: never use these passwords in production):")
        if accounts_skipped:
            self.stdout.write("  (accounts that already existed keep whatever password they have now)")
        width = max(len(account.username) for account in DEMO_ACCOUNTS)
        for account in DEMO_ACCOUNTS:
            self.stdout.write(f"  {account.username:<{width}}  {account.password:<24}  {account.role}")
