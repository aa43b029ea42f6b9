"""Text in, token batches out: read and check the data, clean it, split it, encode it, sample windows.

Every check here runs before a tokenizer is trained or a step is taken, so bad input costs seconds.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainer.errors import ConfigError, ContextTooLongError, DataError

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


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Splits:
    train: str
    val: str
    test: str


def parse_fractions(spec: str | Sequence[float]) -> tuple[float, float, float]:
    """'0.9,0.05,0.05' or (0.9, 0.1) -> (train, val, test); they must add up to 1."""
    parts = [float(x) for x in spec.split(",")] if isinstance(spec, str) else [float(x) for x in spec]
    if len(parts) == 2:
        parts.append(0.0)
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions {spec!r} must be 2 or 3 non-negative numbers adding up to 1")
    if parts[0] <= 0 or parts[1] <= 0:
        raise ConfigError(f"split fractions {spec!r} need a train and a validation part")
    return parts[0], parts[1], parts[2]


def split_text(text: str, fractions: tuple[float, float, float]) -> Splits:
    """Contiguous parts, in order: a held-out tail is a fairer test of a model of running text than
    a random sample of lines that share their neighbours with the training part."""
    n = len(text)
    a = int(n * fractions[0])
    b = int(n * (fractions[0] + fractions[1]))
    if fractions[2] == 0:
        b = n
    return Splits(train=text[:a], val=text[a:b], test=text[b:])


def check_context_fits(block_size: int, split_tokens: dict[str, int]) -> None:
    """A split must hold one window of `block_size` inputs plus the next token as target."""
    for name, n in split_tokens.items():
        if n < block_size + 1:
            raise ContextTooLongError(
                f"the context length {block_size} is longer than the data: the {name} split holds only "
                f"{n} tokens, and one training window needs {block_size + 1}; "
                "use a shorter --context or more data"
            )


def encode(text: str, tokenizer, chunk_chars: int = 1 << 16) -> np.ndarray:
    """Token ids of `text`, encoded in line-aligned chunks so the Rust tokenizer runs them in parallel."""
    chunks, start = [], 0
    while start < len(text):
        end = min(len(text), start + chunk_chars)
        if end < len(text):
            newline = text.rfind("\n", start, end)
            end = newline + 1 if newline > start else end
        chunks.append(text[start:end])
        start = end
    ids = tokenizer(chunks, add_special_tokens=False, verbose=False)["input_ids"] if chunks else []
    dtype = np.uint16 if len(tokenizer) <= 1 << 16 else np.int32
    return np.fromiter((t for chunk in ids for t in chunk), dtype=dtype)


class BatchSampler:
    """Random windows of a token stream; the n-th batch depends only on (seed, rank, n).

    That makes the data position a single number: resuming at position n gives exactly the batches
    the uninterrupted run would have seen, and each DDP rank draws its own.
    """

    def __init__(self, data: np.ndarray, block_size: int, batch_size: int, seed: int, rank: int = 0):
        self.data = torch.from_numpy(data.astype(np.int64))
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.position = 0
        self._generator = torch.Generator()

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._generator.manual_seed(hash((self.seed, self.rank, self.position)) & (2**63 - 1))
        self.position += 1
        starts = torch.randint(len(self.data) - self.block_size, (self.batch_size,), generator=self._generator)
        x = torch.stack([self.data[s : s + self.block_size] for s in starts.tolist()])
        y = torch.stack([self.data[s + 1 : s + 1 + self.block_size] for s in starts.tolist()])
        return x, y
