"""One-line error messages: the package's user-facing errors are one line ``PATH: PROBLEM`` (see :mod:`nnunet_tcup.cli`).

Library messages (nibabel's, SimpleITK's, zlib's, ...) may span several lines; :func:`one_line` joins them and
:func:`library_error` is the one way to quote a library exception inside our own message. :class:`ErrorList` is the
one deliberate exception to "one line": a header line and one line per failing item (e.g. every case of ``convert``
that failed its checks), each item itself joined into one line.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ErrorList", "library_error", "one_line"]


def one_line(text: str) -> str:
    """``text`` with its line breaks (``\\n``, ``\\r``, ...) and the blanks around them joined into single spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def library_error(error: BaseException) -> str:
    """``TYPE: MESSAGE`` of an exception raised by a library, on one line (``TYPE`` alone for an empty message)."""
    message = one_line(str(error))
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class ErrorList(ValueError):
    """A ValueError listing several problems: ``HEADER`` then one ``  - ITEM`` line per item (at most ``limit``,
    then ``  ... and N more``). Each item is joined into one line; :mod:`nnunet_tcup.cli` prints it as it is."""

    def __init__(self, header: str, items: Sequence[str], limit: int = 20):
        self.header = one_line(header)
        self.items = [one_line(item) for item in items]
        self.limit = limit
        lines = [self.header, *(f"  - {item}" for item in self.items[:limit])]
        if len(self.items) > limit:
            lines.append(f"  ... and {len(self.items) - limit} more")
        super().__init__("\n".join(lines))

    def __reduce__(self):  # picklable with its fields (it may travel back from a worker process)
        return (self.__class__, (self.header, self.items, self.limit))
