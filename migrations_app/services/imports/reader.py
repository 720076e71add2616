"""Reading an import file: one streaming pass over the bytes (decoded a block at a time; an undecodable
line or a NUL byte reported with its number), the CSV header with its aliases, counts and sizes as Exchange
writes them, and the errors and result every import reports. Shared by the inventory and permissions imports."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import logging
import re
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from migrations_app.models import ImportJob, Mailbox

logger = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 10_000


# How much of the file is decoded, and how much staging data is sent, at a time. Progress is reported
# once per block.
BLOCK_BYTES = 1 << 20


BIGINT_MAX = 2**63 - 1


Progress = Callable[[int, int], None]


@dataclass
class RowError:
    line: int  # the physical line in the file; the header is line 1
    column: str
    value: str
    message: str


@dataclass
class ImportResult:
    status: str  # ImportJob.Status.SUCCEEDED or ImportJob.Status.REJECTED
    rows_total: int = 0
    rows_valid: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    error_count: int = 0
    errors: list[RowError] = field(default_factory=list)  # the first MAX_REPORTED_ERRORS, by line
    summary: dict = field(default_factory=dict)


class ImportFileError(Exception):
    """The whole file is unusable: no or wrong header, empty, not CSV text. The import functions turn it
    into a rejected result with one line-1 error, so callers only ever see an ImportResult."""

    def __init__(self, message: str, *, line: int = 1, column: str = "", value: str = ""):
        super().__init__(message)
        self.line, self.column, self.value = line, column, value

    def as_result(self) -> ImportResult:
        error = RowError(line=self.line, column=self.column, value=self.value, message=str(self))
        return ImportResult(status=ImportJob.Status.REJECTED, error_count=1, errors=[error])


UNDECODABLE = (
    "this line is not UTF-8 text; in Excel use Save As 'CSV UTF-8 (Comma delimited) (*.csv)' and upload "
    "the file again"
)


HAS_NUL = (
    "this line has a NUL byte (a zero byte), which CSV text cannot hold; a file saved as UTF-16 ('Unicode "
    "text') has one in every character: in Excel use Save As 'CSV UTF-8 (Comma delimited) (*.csv)'"
)


class _Errors:
    """Every error is counted; the first MAX_REPORTED_ERRORS are kept."""

    def __init__(self) -> None:
        self.count = 0
        self.items: list[RowError] = []

    def add(self, line: int, column: str, value: str, message: str) -> None:
        self.count += 1
        if len(self.items) < MAX_REPORTED_ERRORS:
            self.items.append(RowError(line=line, column=column, value=value[:200], message=message))

    def merged(self, more: Iterable[RowError], more_count: int) -> tuple[list[RowError], int]:
        items = sorted([*self.items, *more], key=lambda e: e.line)[:MAX_REPORTED_ERRORS]
        return items, self.count + more_count


class _Lines:
    """The decoded physical lines of a CSV upload, for csv.reader.

    Blocks of ~1 MB are cut at a line end and decoded whole; a block that fails (or holds a NUL, which
    PostgreSQL text cannot store and which means a UTF-16 file) is decoded line by line and its bad lines
    are remembered in `bad_lines`, decoded with replacement characters so the line count stays right.
    """

    def __init__(self, source: typing.BinaryIO, progress: Progress | None, total_bytes: int | None):
        self.source = source
        self.progress = progress
        self.total_bytes = total_bytes if total_bytes is not None else _size_of(source)
        self.bytes_read = 0
        self.bad_lines: set[int] = set()
        self.nul_lines: set[int] = set()  # of bad_lines, those with a NUL byte

    def why(self, line: int) -> str:
        """Why a line of bad_lines cannot be read."""
        return HAS_NUL if line in self.nul_lines else UNDECODABLE

    def __iter__(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self._blocks())

    def _blocks(self) -> Iterator[Iterable[str]]:
        read = self.source.read
        leftover = b""
        lines_before = 0
        first = True
        while True:
            block = read(BLOCK_BYTES)
            if block:
                self.bytes_read += len(block)
                data = leftover + block
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    leftover = data
                    continue
                data, leftover = data[:cut], data[cut:]
            else:
                data, leftover = leftover, b""
                if not data:
                    break
            if first:
                first = False
                if data.startswith(codecs.BOM_UTF8):
                    data = data[len(codecs.BOM_UTF8) :]
            yield self._decode(data, lines_before)
            lines_before += data.count(b"\n")
            if self.progress is not None:
                self.progress(self.bytes_read, max(self.total_bytes, self.bytes_read))
            if not block:
                break

    def _decode(self, data: bytes, lines_before: int) -> Iterable[str]:
        if b"\x00" not in data:
            try:
                return io.StringIO(data.decode("utf-8"))
            except UnicodeDecodeError:
                pass
        lines = []
        for number, raw in enumerate(io.BytesIO(data), start=lines_before + 1):
            try:
                if b"\x00" in raw:
                    self.nul_lines.add(number)
                    raise UnicodeDecodeError("utf-8", raw, 0, 1, "NUL byte")
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                self.bad_lines.add(number)
                lines.append(raw.decode("utf-8", "replace").replace("\x00", ""))
        return lines


def _size_of(source: typing.BinaryIO) -> int:
    size = getattr(source, "size", None)
    if isinstance(size, int):
        return size
    try:
        here = source.tell()
        end = source.seek(0, io.SEEK_END)
        source.seek(here)
        return end - here
    except (AttributeError, OSError, ValueError):
        return 0


class _Reader:
    """csv.reader over _Lines, yielding (first physical line, fields) and skipping blank lines."""

    def __init__(self, lines: _Lines, errors: _Errors):
        self.lines = lines
        self.errors = errors
        self.reader = csv.reader(lines)

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        reader = self.reader
        end = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a field over csv's size limit: report it, read on
                self.errors.add(reader.line_num, "", "", f"this line could not be read as CSV: {exc}")
                end = reader.line_num
                continue
            line, end = end + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            yield line, row


def normalise_header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def read_header(
    rows: Iterator[tuple[int, list[str]]],
    lines: _Lines,
    *,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    aliases: dict[str, str] | None = None,
    ignored: list[str] | None = None,
) -> dict[str, int]:
    """The header's known columns, {name: index}, or ImportFileError saying what is wrong with it. Columns the
    portal does not know (an export from Exchange has dozens, the portal's own export has its state columns)
    are appended to `ignored` and skipped rather than rejected, when a list is given."""
    aliases = aliases or {}
    expected = ", ".join(required) + (f" (optional: {', '.join(optional)})" if optional else "")
    try:
        line, header = next(rows)
    except StopIteration:
        raise ImportFileError(
            f"The file is empty. Expected a header line with the columns {expected}."
        ) from None
    if line in lines.bad_lines:
        if line in lines.nul_lines:
            raise ImportFileError(f"Line {line} (the header) {HAS_NUL}.", line=line)
        raise ImportFileError(f"Line {line} (the header) is not UTF-8 text: {UNDECODABLE.split('; ', 1)[1]}.")
    if line != 1:
        raise ImportFileError(f"The header must be on line 1 (found blank lines before it, on line {line}).")
    names = [aliases.get(normalise_header(h), normalise_header(h)) for h in header]
    known = set(required) | set(optional)
    unknown = [h.strip() or "(blank)" for h, n in zip(header, names, strict=True) if n not in known]
    missing = [c for c in required if c not in names]
    repeated = sorted({n for n in names if n in known and names.count(n) > 1})
    if ignored is not None and unknown:
        ignored.extend(unknown)
        unknown = []
    if not (unknown or missing or repeated):
        return {name: index for index, name in enumerate(names) if name in known}
    problems = []
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown columns: {', '.join(unknown)}")
    if repeated:
        problems.append(f"repeated columns: {', '.join(repeated)}")
    message = f"The header (line 1) is not right: {'; '.join(problems)}. Expected the columns {expected}."
    if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
        message += " The columns seem to be separated by ';' or tabs: save the file as CSV (comma delimited)."
    raise ImportFileError(message, value=",".join(header)[:200])


EMAIL_RE = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
    re.ASCII,
)


KINDS = {
    "user": Mailbox.Kind.USER.value,
    "shared": Mailbox.Kind.SHARED.value,
    "room": Mailbox.Kind.ROOM.value,
    "equipment": Mailbox.Kind.EQUIPMENT.value,
    # Exchange's RecipientTypeDetails names, as Get-Mailbox exports them
    "usermailbox": Mailbox.Kind.USER.value,
    "sharedmailbox": Mailbox.Kind.SHARED.value,
    "roommailbox": Mailbox.Kind.ROOM.value,
    "equipmentmailbox": Mailbox.Kind.EQUIPMENT.value,
}


KINDS_EXACT = {**KINDS, "UserMailbox": "user", "SharedMailbox": "shared", "RoomMailbox": "room"}


KINDS_EXACT["EquipmentMailbox"] = "equipment"


# Exchange's TotalItemSize text: "1.2 GB (1,288,490,188 bytes)"
EXCHANGE_SIZE_RE = re.compile(r"\(\s*([\d,]+)\s*bytes\s*\)\s*$", re.IGNORECASE)


GROUPED_DIGITS_RE = re.compile(r"\d{1,3}(?:,\d{3})+")


def parse_count(text: str) -> tuple[int | None, str]:
    """A whole number from a cell: plain digits, digits grouped with commas, or Exchange's size text.
    Returns (number, "") or (None, why not)."""
    value = text.strip()
    if value.isascii() and value.isdigit():
        number = int(value)
    elif GROUPED_DIGITS_RE.fullmatch(value):
        number = int(value.replace(",", ""))
    elif match := EXCHANGE_SIZE_RE.search(value):
        number = int(match.group(1).replace(",", ""))
    elif not value:
        return None, "is empty: give a whole number"
    elif value.startswith("-") and value[1:].strip().replace(",", "").isdigit():
        return None, "is negative"
    else:
        return None, "is not a whole number"
    if number > BIGINT_MAX:
        return None, "is too large"
    return number, ""
