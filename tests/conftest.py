pytest_plugins = [
    "tests.emulators",
    "tests.fakes.klaviyo",
    "tests.fakes.commercetools",
]
