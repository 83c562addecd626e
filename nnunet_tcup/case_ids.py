"""Case ids taken from file and folder names: which are refused, and how a name appears in a one-line message.

A case id is a file or folder name without its ending (``CASE.nii.gz`` -> ``CASE``). Every command refuses

- an id holding a control character (a newline, tab, carriage return, ...): it cannot be shown on one line and
  would break the rows of every table it goes into;
- two ids of one input that are equal under Unicode NFKC normalisation (a full-width ``０００２１`` and an ASCII
  ``00021``, a composed and a decomposed accent): they look alike, so they would be one case to a person and two to
  the program. The error names both files.

The BraTS id patterns (:mod:`nnunet_tcup.dataset_conversion.layout`) are ASCII only and must match the whole name,
so ``convert`` and ``export`` also refuse full-width or Arabic-Indic digits and a trailing newline.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Mapping
from typing import Union

__all__ = ["check_case_id", "check_distinct_case_ids", "id_problem", "non_ascii_note", "shown"]

PathLike = Union[str, "os.PathLike[str]"]


def shown(name: PathLike) -> str:
    """``name`` as text for a one-line message: unchanged when every character is printable, else its ``repr``
    (``'BraTS-GLI-00001-000\\n'``), so a newline or tab in a name never splits or hides in the message."""
    text = os.fspath(name)
    return text if text.isprintable() else repr(text)


def id_problem(case_id: str) -> str | None:
    """Why ``case_id`` is refused everywhere (empty, or a control character), or None when it is fine."""
    if not case_id:
        return "empty case id"
    bad = [c for c in case_id if unicodedata.category(c) == "Cc"]
    if bad:
        return f"case id {case_id!r} holds a control character ({', '.join(repr(c) for c in dict.fromkeys(bad))})"
    return None


def non_ascii_note(name: str) -> str:
    """`` (it holds non-ASCII characters, e.g. full-width or Arabic-Indic digits; BraTS ids are ASCII)`` when
    ``name`` is not ASCII, else an empty string: the hint for an id that looks right but does not match."""
    if name.isascii():
        return ""
    odd = "".join(dict.fromkeys(c for c in name if not c.isascii()))[:5]
    return f" (it holds non-ASCII characters {odd!r}, e.g. full-width or Arabic-Indic digits; BraTS ids are ASCII)"


def check_case_id(case_id: str, path: PathLike) -> str:
    """Return ``case_id``; ValueError starting with ``path`` (shown on one line) when :func:`id_problem` finds one."""
    problem = id_problem(case_id)
    if problem:
        raise ValueError(f"{shown(path)}: {problem}; rename the file")
    return case_id


def check_distinct_case_ids(files: Mapping[str, PathLike]) -> None:
    """ValueError naming both files if two ids of ``files`` (``{case id: file}``) are equal under NFKC; every id is
    also checked with :func:`check_case_id`."""
    seen: dict[str, tuple[str, PathLike]] = {}
    for case_id, path in files.items():
        check_case_id(case_id, path)
        key = unicodedata.normalize("NFKC", case_id)
        if key in seen and seen[key][0] != case_id:
            other_id, other = seen[key]
            raise ValueError(
                f"{shown(path)}: case id {case_id!r} equals {other_id!r} of {shown(other)} under Unicode "
                "normalisation (NFKC); two names that look alike cannot be two cases, rename one"
            )
        seen.setdefault(key, (case_id, path))
