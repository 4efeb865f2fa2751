"""Reading users' text files: one home for the UTF-8 rule and for JSON Lines, with one-line errors naming the file
and the line (train data, eval items, re-scored generations)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from meds1.errors import MedS1Error


def read_text(path: str | Path) -> str:
    """The file as UTF-8 text (a byte-order mark is allowed); another encoding is one line naming the byte."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[:err.start].count(b"\n") + 1
        raise MedS1Error(f"not UTF-8 text: byte 0x{err.object[err.start]:02x} on line {line} (save the file as "
                         "UTF-8, e.g. iconv -f latin1 -t utf-8)", file=path) from None
    except FileNotFoundError:
        raise MedS1Error("file not found", file=path) from None
    except IsADirectoryError:
        raise MedS1Error("is a folder, not a file", file=path) from None
    except OSError as err:
        raise MedS1Error(f"cannot read ({err.strerror})", file=path) from None


def jsonl_objects(path: str | Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) for every non-blank line; a line that is not JSON is one line naming it."""
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise MedS1Error(f"line {number}: invalid JSON ({err.msg}, column {err.colno})", file=path) from None
