"""The test suite: ``unit/`` mirrors the source tree, ``integration/`` runs commands end to end, ``helpers/`` is shared."""
