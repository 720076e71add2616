from tests.switch_fixtures import FAKE_CLIENT, fake_exchange  # noqa: F401 (fixture)
