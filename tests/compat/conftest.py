from tests.integration.conftest import redis_cli, server

__all__ = ["redis_cli", "server"]
