"""Connections that count the bytes read from their socket, to show what
went over the wire compressed."""


def counting(base):
    """A subclass of the websockets connection class `base` that keeps the
    number of bytes received in `wire_bytes_received`."""

    class Counting(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.wire_bytes_received = 0

        def data_received(self, data):
            self.wire_bytes_received += len(data)
            super().data_received(data)

    return Counting
