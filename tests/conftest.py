import os

# Tests configure everything through the environment; a developer's .env must not leak in.
os.environ["CONNECTOR_ENV_FILE"] = os.devnull

pytest_plugins = [
    "tests.emulators",
    "tests.fakes.klaviyo",
    "tests.fakes.commercetools",
    "tests.realtime",
]
