"""Network helpers for tests that start servers of their own."""

import socket


def free_port() -> int:
    """A port nobody listens on now, for a server whose address must be known before it starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
