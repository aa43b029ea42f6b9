"""Reading training text: a file, or every text file under a directory, checked before any work starts (empty,
binary, not UTF-8) and cleaned (newlines, Unicode forms, control characters)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from trainer.errors import DataError

TEXT_SUFFIXES = (".txt", ".md", ".text")
DOCUMENT_SEPARATOR = "<|endoftext|>"
# C0/C1 control characters other than tab and newline carry no text, only trouble for a tokenizer
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SNIFF_BYTES = 8192


def read_text(path: str | Path) -> str:
    """The text of a file, or of every text file under a directory, joined as separate documents."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data not found: {path} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise DataError(f"no text files ({', '.join(TEXT_SUFFIXES)}) under the directory {path}")
        documents = [_read_one(f) for f in files]
        return DOCUMENT_SEPARATOR.join(d for d in documents if d.strip())
    return _read_one(path)


def _read_one(path: Path) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path} is empty" if not raw else f"{path} holds only whitespace")
    nul = raw.find(b"\x00", 0, _SNIFF_BYTES)
    if nul >= 0:
        raise DataError(f"{path} looks like a binary file, not text (a NUL byte at offset {nul})")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            "is it a binary file? Convert it to UTF-8 first"
        ) from None


def clean_text(text: str) -> str:
    """Unify newlines and Unicode forms and drop control characters; readable text passes unchanged."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    text = unicodedata.normalize("NFC", text)
    return _CONTROL.sub("", text)


def load_clean_text(path: str | Path) -> str:
    text = clean_text(read_text(path))
    if not text.strip():
        raise DataError(f"{path} holds no text once control characters are removed")
    return text
