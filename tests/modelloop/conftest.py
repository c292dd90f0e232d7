import pytest

from modelloop import services


@pytest.fixture
def fresh_scorer_cache():
    """The test starts like a new worker process: no scorer loaded, no load failure remembered."""
    services._scorers.clear()
    services._load_failures.clear()
    yield
    services._scorers.clear()
    services._load_failures.clear()
