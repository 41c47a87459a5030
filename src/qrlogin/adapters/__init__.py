"""I/O at the edge: each adapter maps a pure core onto a third-party library, imported only here."""

__all__ = []
