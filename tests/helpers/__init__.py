"""Helpers shared by the tests (``from tests.helpers.ops import ...``); no test is collected here."""
