from qrlogin import LocalProtocolError, RemoteProtocolError


def test_error_split_is_distinct() -> None:
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)
