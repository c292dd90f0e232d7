import pytest

from modelloop import services
from modelloop.services import loading, registry


@pytest.fixture
def fresh_scorer_cache():
    """The test starts like a new worker process: no scorer loaded, no load failure remembered."""
    services.scorer_cache_clear()
    yield
    services.scorer_cache_clear()


@pytest.fixture
def use_scorers(monkeypatch):
    """``use_scorers({key: cls})`` replaces the scorer registry where versions are registered and loaded."""

    def use(scorers: dict) -> None:
        for module in (registry, loading):
            monkeypatch.setattr(module, "scorer_registry", lambda: scorers)

    return use
