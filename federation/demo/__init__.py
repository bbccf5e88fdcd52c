"""Small demo applications used by ``meshfed up`` and the integration tests."""
