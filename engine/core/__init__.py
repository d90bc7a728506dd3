"""The bottom layer: events, the bus, clocks, errors, the wire format, configuration bases.
It imports nothing above it (``make check`` holds it to that)."""
