"""`missile-sites serve`: the listening socket every worker shares."""

import socket

from app.cli import listening_socket


def test_connections_accepted_by_the_shared_listener_send_without_nagle_delay():
    with listening_socket("127.0.0.1", 0) as listener:
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert listener.get_inheritable()
        with socket.create_connection(listener.getsockname()[:2]) as _client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
