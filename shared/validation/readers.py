"""Turn a dataset stream into rows, in one pass and constant memory, for each format.

Every reader yields ``(line, offset, size, value, dumped)`` per row: the 1-based line (JSONL) or row
number (.json element, Parquet row), the byte offset of the row in the file (None for Parquet), its
size in bytes, the parsed value — or a ``Problem`` when it cannot be parsed — and, for Parquet, the
row already serialised as compact JSON (None otherwise). A ``Problem`` with ``fatal`` set ends the
file: nothing after it can be read reliably.

JSONL and JSON are read in 2 MiB chunks by ``Chunks``, which also counts and SHA-256-hashes the
raw bytes (on a helper thread, overlapping with parsing).
"""

from __future__ import annotations

import hashlib
import itertools
import queue
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from shared.rawio import PositionedReader

CHUNK = 2 * 1024 * 1024
_BOM8 = b"\xef\xbb\xbf"
_FOREIGN_BOMS = {b"\xff\xfe": "UTF-16 LE", b"\xfe\xff": "UTF-16 BE"}

Row = tuple[int, int | None, int, Any, bytes | None]
Chunk = bytes | bytearray
"""A piece of a file as a reader gets it (a worker reads into one reused ``bytearray``)."""


@dataclass(frozen=True)
class Problem:
    """A row (or, when ``fatal``, the rest of a file) that could not be read."""

    code: str
    message: str
    column: int | None = None
    byte_offset: int | None = None
    fatal: bool = False


def mib(n: int) -> str:
    return f"{n / 1024**2:,.1f} MiB" if n >= 1024**2 else f"{n:,} bytes"


# -- chunked reading -----------------------------------------------------------------------------
class Chunks:
    """A stream read in ``chunk_size`` pieces, counted and SHA-256-hashed as it goes.

    Reading stops at the first byte past ``limit`` (``too_large`` is then set and the chunk
    holding it is not delivered). Hashing runs on a helper thread: ``hashlib`` releases the
    GIL while it hashes a large buffer, so on a machine with a spare core the digest costs the
    parsing thread nothing; the queue holds at most ``depth`` chunks. Exceptions raised by the
    stream (a blob that vanished, a network error) propagate to the caller unchanged. ``close()``
    must be called (it stops the helper thread) before ``sha256`` is read.
    """

    def __init__(self, stream: IO[bytes], limit: int, chunk_size: int = CHUNK, depth: int = 3) -> None:
        self._stream = stream
        self._limit = limit
        self._chunk_size = chunk_size
        self._sha = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None
        self.bytes_read = 0
        self.too_large = False

    def _hash(self) -> None:
        # Keep draining even if hashing fails, so the reader never blocks on a full queue.
        while (data := self._queue.get()) is not None:
            if self._failed is None:
                try:
                    self._sha.update(data)
                except BaseException as exc:
                    self._failed = exc

    def __iter__(self) -> Iterator[bytes]:
        read, size = self._stream.read, self._chunk_size
        # never ask for more than one byte past the limit: a too-large file is read no further
        while data := read(min(size, self._limit + 1 - self.bytes_read)):
            if self.bytes_read + len(data) > self._limit:
                self.too_large = True
                return
            self.bytes_read += len(data)
            if self._thread is None:
                if len(data) < size and self.bytes_read < self._limit:  # a small file: not worth a thread
                    self._sha.update(data)
                    yield data
                    continue
                self._thread = threading.Thread(target=self._hash, name="dataset-sha256", daemon=True)
                self._thread.start()
            self._queue.put(data)
            yield data

    def drain(self) -> None:
        """Read and hash whatever the parser left (it stops at a fatal error), up to the limit, so
        the digest covers the whole file. Call after parsing, instead of or before ``close``."""
        self.close()
        if self.too_large:
            return
        read = self._stream.read
        while data := read(min(self._chunk_size, self._limit + 1 - self.bytes_read)):
            if self.bytes_read + len(data) > self._limit:
                self.too_large = True
                return
            self.bytes_read += len(data)
            self._sha.update(data)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    @property
    def sha256(self) -> str:
        assert self._thread is None, "close() first"
        if self._failed is not None:
            raise self._failed
        return self._sha.hexdigest()


def _with_head(chunks: Iterable[Chunk], size: int = 4) -> Iterator[Chunk]:
    """The same bytes, with the first chunk at least ``size`` long (or the whole stream), so a
    byte-order mark split by a short read is still seen whole."""
    it = iter(chunks)
    head = b""
    for chunk in it:
        head += chunk
        if len(head) >= size:
            break
    if head:
        yield head
    yield from it


def encoding_problem(head: Chunk) -> Problem | None:
    for bom, name in _FOREIGN_BOMS.items():
        if head.startswith(bom):
            return Problem(
                "unsupported_encoding",
                f"the file is {name} (byte-order mark {bom.hex(' ')}); save it as UTF-8",
                byte_offset=0,
                fatal=True,
            )
    return None


def _parse_problem(text: Chunk, exc: orjson.JSONDecodeError, offset: int) -> Problem:
    """Why ``text`` (a JSONL line or a .json element starting at ``offset``) failed to parse."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as bad:
        column = len(text[: bad.start].decode("utf-8", "replace")) + 1
        return Problem(
            "invalid_utf8",
            f"invalid UTF-8 (byte 0x{text[bad.start]:02x}) at byte offset {offset + bad.start:,}, column {column}: "
            "re-save the file as UTF-8",
            column=column,
            byte_offset=offset + bad.start,
        )
    pos = min(exc.pos, len(decoded))
    at = offset + len(decoded[:pos].encode())
    return Problem("invalid_json", f"invalid JSON at column {pos + 1}: {exc.msg}", column=pos + 1, byte_offset=at)


# -- JSON Lines ----------------------------------------------------------------------------------
class JsonlRows:
    """Rows of a JSONL file, or of a byte range of one: one JSON value per line; blank lines are
    skipped (but counted, in ``lines`` once iteration ends).

    Lines are parsed straight from the chunk through memoryview slices (no per-line copy); only a
    line spanning two chunks is joined. A line longer than ``max_line`` is neither parsed nor held:
    its bytes are skipped up to the next newline. CRLF line ends are fine (orjson treats CR as
    whitespace). At the start of a file (``at_start``) a UTF-8 BOM is skipped, a UTF-16 one is
    fatal, and a first line that opens a JSON document gets a hint; a range that starts mid-file
    (``offset`` > 0, just after a newline) numbers its lines from 1 and leaves those to the start.
    """

    def __init__(self, chunks: Iterable[Chunk], max_line: int, offset: int = 0) -> None:
        self._chunks = chunks
        self._max_line = max_line
        self._offset = offset
        self.lines = 0

    def __iter__(self) -> Iterator[Row]:
        loads, decode_error = orjson.loads, orjson.JSONDecodeError
        max_line = self._max_line
        at_start = self._offset == 0
        line_no = 0
        offset = self._offset  # file offset of the line being assembled
        pending: list[Chunk] = []  # the start of a line that spans chunks
        pending_len = 0
        skipping = False  # inside an over-long line: its bytes are dropped until its newline
        stream = _with_head(self._chunks)
        head = next(stream, b"")
        if at_start and (problem := encoding_problem(head)):
            yield (1, 0, len(head), problem, None)
            return
        if at_start and head.startswith(_BOM8):
            head, offset = head[3:], 3
        for chunk in itertools.chain((head,), stream):
            find = chunk.find
            j = find(b"\n")
            if j < 0:
                pending_len += len(chunk)
                if not skipping:
                    if pending_len > max_line:
                        skipping, pending = True, []
                    else:
                        pending.append(chunk)
                continue
            # the line that began in an earlier chunk (or at this chunk's start)
            line_no += 1
            size = pending_len + j
            if skipping or size > max_line:
                yield (line_no, offset, size, _too_large(size, max_line), None)
            elif size:
                line = b"".join(pending) + chunk[:j] if pending else chunk[:j]
                if (row := _one_line(line, line_no, offset, at_start)) is not None:
                    yield row
            offset += size + 1
            pending, pending_len, skipping = [], 0, False
            # the lines wholly inside this chunk
            view = memoryview(chunk)
            i = j + 1
            while (j := find(b"\n", i)) >= 0:
                line_no += 1
                size = j - i
                if size > max_line:
                    yield (line_no, offset, size, _too_large(size, max_line), None)
                else:
                    try:
                        yield (line_no, offset, size, loads(view[i:j]), None)
                    except decode_error as exc:
                        line = chunk[i:j]
                        if line.strip():
                            yield (line_no, offset, size, _line_problem(line, exc, offset, line_no, at_start), None)
                offset += size + 1
                i = j + 1
            if i < len(chunk):
                pending_len = len(chunk) - i
                if pending_len > max_line:
                    skipping = True
                else:
                    pending.append(chunk[i:])
        if pending_len:
            line_no += 1
            if skipping:
                yield (line_no, offset, pending_len, _too_large(pending_len, max_line), None)
            elif (row := _one_line(b"".join(pending), line_no, offset, at_start)) is not None:
                yield row
        self.lines = line_no


def _one_line(line: Chunk, line_no: int, offset: int, at_start: bool) -> Row | None:
    """A line assembled across chunks; None when it is blank."""
    try:
        return (line_no, offset, len(line), orjson.loads(line), None)
    except orjson.JSONDecodeError as exc:
        if not line.strip():
            return None
        return (line_no, offset, len(line), _line_problem(line, exc, offset, line_no, at_start), None)


def _too_large(size: int, limit: int, unit: str = "the line") -> Problem:
    return Problem("row_too_large", f"{unit} is {mib(size)}, over the {mib(limit)} row limit; it was skipped")


def _line_problem(line: Chunk, exc: orjson.JSONDecodeError, offset: int, line_no: int, at_start: bool) -> Problem:
    problem = _parse_problem(line, exc, offset)
    if at_start and line_no == 1 and line.strip() in (b"[", b"{"):
        return Problem(
            problem.code,
            problem.message + " — this looks like one JSON document, not JSON Lines (one object per line): "
            "name the file .json, or write one conversation per line",
            problem.column,
            problem.byte_offset,
        )
    return problem


# -- a .json top-level array, streamed -----------------------------------------------------------
_STRUCTURAL = re.compile(rb'["\[\]{}]')
_WHITESPACE = re.compile(rb"[ \t\r\n]*")
_SCALAR = re.compile(rb"[^,\]\s]+")
_FIRST_KEY = re.compile(rb'\{[ \t\r\n]*"[^"\\]{0,256}"[ \t\r\n]*:')
_QUOTE, _BACKSLASH, _OPEN_OBJ, _OPEN_ARR = 0x22, 0x5C, 0x7B, 0x5B


class _Scan:
    """Finds where a JSON value that starts with ``{``, ``[`` or ``"`` ends, without parsing it.

    Tracks bracket depth outside strings; inside a string only the closing quote matters, found
    with ``bytes.find`` (memchr speed) and checked for escaping by counting the backslashes before
    it. Resumable: when the buffer ends first, ``end`` returns -1 and keeps its state so that the
    next call (with more data, same element start) carries on where it stopped.
    """

    __slots__ = ("depth", "resume")

    def __init__(self) -> None:
        self.depth = 0
        self.resume = 0  # offset from the element start where scanning continues

    def end(self, buf: bytes, start: int) -> int:
        search, find = _STRUCTURAL.search, buf.find
        depth = self.depth
        i = start + self.resume
        while True:
            m = search(buf, i)
            if m is None:
                self.depth, self.resume = depth, len(buf) - start
                return -1
            j = m.start()
            c = buf[j]
            if c == _QUOTE:
                k = find(b'"', j + 1)
                while k > 0 and buf[k - 1] == _BACKSLASH:
                    b = k - 2
                    while buf[b] == _BACKSLASH:  # the opening quote at j stops this
                        b -= 1
                    if (k - 1 - b) % 2 == 0:  # an even run of backslashes: the quote is real
                        break
                    k = find(b'"', k + 1)
                if k < 0:
                    self.depth, self.resume = depth, j - start  # rescan this string with more data
                    return -1
                i = k + 1
                if depth == 0:
                    return i  # the element is a string
            elif c in (_OPEN_OBJ, _OPEN_ARR):
                depth += 1
                i = j + 1
            else:
                depth -= 1
                i = j + 1
                if depth <= 0:
                    return i


class _Skip:
    """Consumes an over-long .json element chunk by chunk without keeping it (same rules as _Scan)."""

    __slots__ = ("depth", "escaped", "in_string")

    def __init__(self, depth: int, in_string: bool) -> None:
        self.depth, self.in_string, self.escaped = depth, in_string, False

    def feed(self, buf: bytes, i: int) -> int:
        """Index just past the element's end in ``buf``, or -1 when the element goes on."""
        n = len(buf)
        while i < n:
            if self.escaped:
                self.escaped = False
                i += 1
                continue
            if self.in_string:
                q, b = buf.find(b'"', i), buf.find(b"\\", i)
                if b >= 0 and (q < 0 or b < q):
                    self.escaped, i = True, b + 1
                elif q >= 0:
                    self.in_string, i = False, q + 1
                else:
                    return -1
                continue
            m = _STRUCTURAL.search(buf, i)
            if m is None:
                return -1
            j = m.start()
            c = buf[j]
            i = j + 1
            if c == _QUOTE:
                self.in_string = True
            elif c in (_OPEN_OBJ, _OPEN_ARR):
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth <= 0:
                    return i
        return -1


def json_rows(chunks: Iterable[bytes], max_line: int) -> Iterator[Row]:
    """Rows of a .json file holding one top-level array, element by element, in constant memory.

    Element boundaries come from ``_Scan`` (brackets outside strings), so an element that is
    invalid JSON inside (a trailing comma, bad UTF-8) is a row-level error and reading goes on;
    a broken array itself (no ``[``, a missing comma, a truncated file) ends the file. An element
    over ``max_line`` is skipped chunk by chunk, never held whole.
    """
    return _JsonArray(chunks, max_line).rows()


class _JsonArray:
    def __init__(self, chunks: Iterable[bytes], max_line: int) -> None:
        self._chunks = _with_head(chunks)
        self._max_line = max_line
        self.buf = b""
        self.base = 0  # file offset of buf[0]
        self.pos = 0
        self.row = 0
        # The fast path (see _fast): the bytes between one object row and the next one's first key
        # (e.g. b'},\n  {\n    "prompt":'), learned from the file itself.
        self._separator = b""
        self._relearn = True
        self._previous_close = -1  # index in buf of the last object row's closing brace
        self._hits = self._misses = 0

    def _more(self) -> bool:
        """Append the next chunk (dropping what is consumed); False at the end of the file."""
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        if self.base == 0 and not self.buf and chunk.startswith(_BOM8):  # the first chunk
            chunk, self.base = chunk[3:], 3
        self.base += self.pos
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        self._previous_close = -1
        return True

    def _fatal(self, code: str, message: str) -> Row:
        at = self.base + self.pos
        return (max(self.row, 1), at, 0, Problem(code, message, byte_offset=at, fatal=True), None)

    def _skip_ws(self) -> int:
        """The next non-whitespace byte (reading more as needed), or -1 at the end of the file."""
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]  # matches ""
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return -1

    def rows(self) -> Iterator[Row]:
        if not self._more():
            yield self._fatal("not_a_json_array", "the file is empty: expected a JSON array of conversations")
            return
        if problem := encoding_problem(self.buf):
            yield (1, 0, 0, problem, None)
            return
        c = self._skip_ws()
        if c != _OPEN_ARR:
            found = "nothing" if c < 0 else repr(chr(c))
            hint = " (one conversation per line? name the file .jsonl)" if c == _OPEN_OBJ else ""
            yield self._fatal(
                "not_a_json_array",
                f"a .json dataset must be one JSON array of conversations; found {found} "
                f"at byte {self.base + self.pos:,}{hint}",
            )
            return
        self.pos += 1
        expect_element = False  # after '[' an element or ']'; after ',' an element
        while True:
            c = self._skip_ws()
            if c == _OPEN_OBJ and self._separator:
                yield from self._fast_rows()  # returns at a row's '{' (maybe the same one)
                c = _OPEN_OBJ
            if c < 0:
                yield self._fatal("malformed_json_array", f"the file ends inside the array, after row {self.row:,}")
                return
            if c == 0x5D and not expect_element:  # ']'
                self.pos += 1
                break
            if c in (0x5D, 0x2C):
                what = "a trailing comma before ']'" if c == 0x5D else "an empty row (',,')"
                yield self._fatal("malformed_json_array", f"{what} at byte {self.base + self.pos:,}")
                return
            self.row += 1
            if c == _OPEN_OBJ and self._relearn and self._previous_close >= 0:
                self._learn()
            yield from self._element(c)
            if self.pos < 0:
                return
            c = self._skip_ws()
            if c == 0x2C:
                self.pos += 1
                expect_element = True
                continue
            if c == 0x5D:
                self.pos += 1
                break
            found = "the end of the file" if c < 0 else f"{chr(c)!r} at byte {self.base + self.pos:,}"
            yield self._fatal("malformed_json_array", f"expected ',' or ']' after row {self.row:,}, found {found}")
            return
        c = self._skip_ws()
        if c >= 0:
            at = self.base + self.pos
            yield self._fatal("malformed_json_array", f"unexpected data after the array's closing ']' at byte {at:,}")

    def _learn(self) -> None:
        """Remember the bytes from the previous row's closing brace to this row's first key."""
        if m := _FIRST_KEY.match(self.buf, self.pos):
            self._separator = self.buf[self._previous_close : m.end()]
            self._relearn = False

    def _fast_rows(self) -> Iterator[Row]:
        """Object rows found by the learned separator, from ``pos`` (an object row's '{') on.

        The next occurrence of the separator marks a candidate end; parsing the candidate (which
        has to happen anyway) proves it: a valid row cut short at a '}' never parses (a string or a
        bracket would be left open), nor does a slice running past its end. So a row costs one
        ``bytes.find`` and its parse, and the next row starts at a known offset in the separator.
        On a miss (no candidate in the buffer, the separator inside a row, an invalid row) this
        returns at the row's start for the scan to take over; once misses outnumber a quarter of
        the hits, the fast path is off for the file, which bounds its cost.
        """
        separator = self._separator
        to_next = separator.index(b"{", 1)  # from the closing brace to the next row's '{'
        loads, decode_error, reach = orjson.loads, orjson.JSONDecodeError, self._max_line + len(separator)
        buf, pos = self.buf, self.pos
        view = memoryview(buf)
        while (cut := buf.find(separator, pos, pos + reach)) >= 0:
            try:
                value = loads(view[pos : cut + 1])
            except decode_error:
                self._misses += 1
                self._relearn = True
                if self._misses > 16 and self._misses * 4 > self._hits:
                    self._separator = b""
                break
            self._hits += 1
            self.row += 1
            yield (self.row, self.base + pos, cut + 1 - pos, value, None)
            self._previous_close = cut
            pos = cut + to_next
        self.pos = pos

    def _element(self, c: int) -> Iterator[Row]:
        """Yield the element at ``pos`` and move past it (``pos`` = -1 when the file is broken)."""
        self._previous_close = -1
        if c in (_OPEN_OBJ, _OPEN_ARR, _QUOTE):
            scan = _Scan()
            while (end := scan.end(self.buf, self.pos)) < 0:
                if len(self.buf) - self.pos > self._max_line:
                    yield from self._skip(scan)
                    return
                if not self._more():
                    yield self._fatal("malformed_json_array", f"the file ends inside row {self.row:,}")
                    self.pos = -1
                    return
        else:  # a number, true, false, null (or junk): up to the next ',' ']' or whitespace
            while (end := _SCALAR.match(self.buf, self.pos).end()) == len(self.buf):  # type: ignore[union-attr]
                if len(self.buf) - self.pos > self._max_line or not self._more():
                    break
        start, text = self.base + self.pos, self.buf[self.pos : end]
        if c == _OPEN_OBJ:
            self._previous_close = end - 1
        self.pos = end
        if len(text) > self._max_line:
            yield (self.row, start, len(text), _too_large(len(text), self._max_line, "the row"), None)
            return
        try:
            yield (self.row, start, len(text), orjson.loads(text), None)
        except orjson.JSONDecodeError as exc:
            problem = _parse_problem(text, exc, start)
            yield (self.row, start, len(text), problem, None)

    def _skip(self, scan: _Scan) -> Iterator[Row]:
        start = self.base + self.pos
        skip = _Skip(scan.depth, in_string=False)
        i = self.pos + scan.resume
        while (end := skip.feed(self.buf, i)) < 0:
            self.base += len(self.buf)
            self.buf, self.pos, i = b"", 0, 0
            if not self._more():
                yield self._fatal("malformed_json_array", f"the file ends inside row {self.row:,}")
                self.pos = -1
                return
        self.pos = end
        size = self.base + end - start
        yield (self.row, start, size, _too_large(size, self._max_line, "the row"), None)


# -- Parquet -------------------------------------------------------------------------------------
_GAP = 64 * 1024


class HashingFile(PositionedReader):
    """A seekable stream that SHA-256-hashes the file's bytes in file order as a reader reads them.

    Parquet readers jump around (the footer first, then column chunks), so only reads that extend
    the hashed prefix are hashed as they pass; a small hole before a read (≤ 64 KiB, e.g. the 4-byte
    magic) is read and hashed first, and ``finish()`` reads whatever is still unhashed (at least
    the footer, read first). ``reread`` counts those extra bytes.
    """

    def __init__(self, raw: IO[bytes], size: int) -> None:
        super().__init__(size)
        self._raw = raw
        self._hashed = 0
        self.sha256 = hashlib.sha256()
        self.reread = 0

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        pos = self._pos
        if self._hashed < pos <= self._hashed + _GAP:
            self._hash_range(self._hashed, pos)
        self._raw.seek(pos)
        n = 0
        while n < len(view):
            got = self._raw.readinto(view[n:])  # type: ignore[attr-defined]
            if not got:
                break
            n += got
        if pos <= self._hashed < pos + n:
            self.sha256.update(view[self._hashed - pos : n])
            self._hashed = pos + n
        self._pos = pos + n
        return n

    def _hash_range(self, start: int, end: int) -> None:
        self._raw.seek(start)
        while start < end:
            data = self._raw.read(min(CHUNK, end - start))
            if not data:
                break
            self.sha256.update(data)
            self.reread += len(data)
            start += len(data)
        self._hashed = start

    def finish(self) -> str:
        """Hash the bytes not hashed yet and return the file's SHA-256 (hex)."""
        self._hash_range(self._hashed, self._size)
        return self.sha256.hexdigest()


def _json_default(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _parquet_batches(file: HashingFile, batch_size: int) -> Iterator[Any]:
    """Record batches, streamed (no pre-buffering; column chunks read through a 2 MiB buffer).

    Arrow's default allocator (mimalloc) keeps freed pages, which lifted peak RSS from ~90 to
    ~150 MB on a 400 MB file; pyarrow's ``ParquetFile`` cannot be given another pool, so the
    reader under it is used with the system allocator — falling back to ``ParquetFile`` should
    that internal class change.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        from pyarrow._parquet import ParquetReader

        reader = ParquetReader(memory_pool=pa.system_memory_pool())
        reader.open(file, buffer_size=CHUNK, pre_buffer=False)
        groups = list(range(reader.num_row_groups))
    except (ImportError, TypeError, AttributeError):
        parquet = pq.ParquetFile(file, buffer_size=CHUNK, pre_buffer=False)
        return iter(parquet.iter_batches(batch_size=batch_size, use_threads=False))
    return iter(reader.iter_batches(batch_size, groups, None, False))


def parquet_rows(file: HashingFile, max_line: int, batch_size: int = 128) -> Iterator[Row]:
    """Rows of a Parquet file as dicts, ``batch_size`` rows at a time, with their compact JSON.

    Column chunks are streamed (``buffer_size``, no pre-buffering), so memory stays near a few
    MiB per column whatever the row-group size. A row larger than ``max_line`` as compact JSON is
    an error, like an over-long JSONL line. Binary values are decoded as UTF-8.
    """
    import pyarrow as pa

    dumps = orjson.dumps
    row = 0
    try:
        for batch in _parquet_batches(file, batch_size):
            for value in batch.to_pylist():
                row += 1
                try:
                    dumped = dumps(value, default=_json_default)
                except TypeError as exc:
                    problem = Problem("unsupported_value", f"row holds a value JSON cannot hold: {exc}")
                    yield (row, None, 0, problem, None)
                    continue
                if len(dumped) > max_line:
                    yield (row, None, len(dumped), _too_large(len(dumped), max_line, "the row (as JSON)"), None)
                else:
                    yield (row, None, len(dumped), value, dumped)
    except pa.ArrowException as exc:
        # An exception raised by the stream itself (a blob that vanished) comes back as itself, not
        # as an ArrowException, and propagates: it is not the dataset's fault.
        problem = Problem("parquet_unreadable", f"cannot read the Parquet file after row {row:,}: {exc}", fatal=True)
        yield (max(row, 1), None, 0, problem, None)
