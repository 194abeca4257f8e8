"""Request bodies built from forms: ``data=`` (urlencoded) and ``files=`` (multipart).

A multipart body is never assembled in memory. [`MultipartBody`] is an async iterable that
yields each part's header block, then the part's content piece by piece -- a file is read
``PIECE_SIZE`` bytes at a time, in a worker thread for a sync file -- so an upload of any size
costs bounded memory. When every part's size is known (bytes, str, regular files) the total
is computed up front and sent as Content-Length.

The body can be sent again (a retry on a fresh connection, a 307/308 redirect) when every file
in it is seekable: each iteration starts from the positions the files had when the body was
built. It says so through ``seekable()``/``tell()``/``seek()``, which is what the client's
replay logic asks of any body.
"""

from __future__ import annotations

import inspect
import io
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import IO, Any, Union
from urllib.parse import urlencode

import anyio.to_thread

from ._body import PIECE_SIZE, remaining_size
from ._exceptions import InvalidRequest

__all__ = (
    "FileContent",
    "FileTypes",
    "FormData",
    "MultipartBody",
    "RequestFiles",
    "encode_form",
)

#: What one file of ``files=`` may hold: bytes, text, or an open binary file (sync, or async
#: with a coroutine ``read``, as anyio's ``AsyncFile``).
FileContent = Union[bytes, str, IO[bytes], Any]
#: One entry of ``files=``: the content alone, or ``(filename, content)``,
#: ``(filename, content, content_type)``, ``(filename, content, content_type, headers)``.
FileTypes = Union[
    FileContent,
    tuple[Union[str, None], FileContent],
    tuple[Union[str, None], FileContent, Union[str, None]],
    tuple[Union[str, None], FileContent, Union[str, None], Mapping[str, str]],
]
#: ``files=``: a mapping of field name to file, or a sequence of ``(field name, file)`` pairs
#: (a name may repeat).
RequestFiles = Union[Mapping[str, FileTypes], Sequence[tuple[str, FileTypes]]]
#: ``data=``: form fields; a value may be a list (the field repeats).
FormData = Mapping[str, Any]


def _field_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise InvalidRequest(
        f"a form field value must be str, bytes, int, float, bool or None, not "
        f"{type(value).__name__}"
    )


def _form_pairs(data: FormData) -> list[tuple[str, str]]:
    if not isinstance(data, Mapping):
        raise InvalidRequest(
            f"data= takes a mapping of form fields, not {type(data).__name__} "
            "(send bytes or text with content=)"
        )
    pairs: list[tuple[str, str]] = []
    for name, value in data.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        pairs.extend((str(name), _field_value(item)) for item in values)
    return pairs


def encode_form(data: FormData) -> bytes:
    """``data=`` as an ``application/x-www-form-urlencoded`` body."""
    return urlencode(_form_pairs(data)).encode("ascii")


def _quote(value: str) -> str:
    # As browsers do (WHATWG HTML, multipart/form-data encoding): escape the quote and
    # line breaks in names and file names, keep everything else as UTF-8.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class _Part:
    """One part: its header block, then its content (whole, or read from a file)."""

    __slots__ = ("content", "file", "header", "length", "start")

    def __init__(
        self, header: bytes, content: bytes | None, file: Any, length: int | None, start: int | None
    ) -> None:
        self.header = header
        self.content = content
        self.file = file
        self.length = length
        self.start = start  # where the file is rewound to before each iteration (None: cannot)


def _header_block(name: str, filename: str | None, content_type: str | None, extra: Any) -> bytes:
    disposition = f'form-data; name="{_quote(name)}"'
    if filename is not None:
        disposition += f'; filename="{_quote(filename)}"'
    lines = [f"Content-Disposition: {disposition}"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    for key, value in dict(extra or {}).items():
        if key.lower() not in ("content-disposition", "content-type"):
            lines.append(f"{key}: {value}")
    text = "\r\n".join(lines) + "\r\n\r\n"
    for character in text:
        if character in "\x00" or (ord(character) < 0x20 and character not in "\r\n"):
            raise InvalidRequest(f"a multipart header for field {name!r} has a control character")
    return text.encode("utf-8")


def _file_part(name: str, spec: FileTypes) -> _Part:
    filename: str | None
    content_type: str | None = None
    extra: Any = None
    if isinstance(spec, tuple):
        if not 2 <= len(spec) <= 4:
            raise InvalidRequest(
                f"files[{name!r}] must be the content or (filename, content[, content_type"
                "[, headers]]), not a tuple of " + str(len(spec))
            )
        filename, content = spec[0], spec[1]
        if len(spec) >= 3:
            content_type = spec[2]
        if len(spec) == 4:
            extra = spec[3]
    else:
        content = spec
        filename = _default_filename(content, name)
    if content_type is None and filename is not None:
        content_type = "application/octet-stream"
    header = _header_block(name, filename, content_type, extra)
    if isinstance(content, str):
        content = content.encode("utf-8")
    if isinstance(content, (bytes, bytearray, memoryview)):
        data = bytes(content)
        return _Part(header, data, None, len(data), 0)
    read = getattr(content, "read", None)
    if not callable(read):
        raise InvalidRequest(
            f"files[{name!r}] must be bytes, str or an open binary file, not "
            f"{type(content).__name__}"
        )
    if isinstance(content, io.TextIOBase):
        raise InvalidRequest(f"files[{name!r}] is a text file: open it in binary mode ('rb')")
    sync_file: Any = content
    if inspect.iscoroutinefunction(read):
        sync_file = getattr(content, "wrapped", content)
    length = remaining_size(sync_file)
    start: int | None = None
    try:
        if sync_file.seekable():
            start = int(sync_file.tell())
    except (AttributeError, OSError, ValueError):
        start = None
    return _Part(header, None, content, length, start)


def _default_filename(content: Any, field: str) -> str | None:
    if isinstance(content, (bytes, bytearray, memoryview, str)):
        return field  # as httpx: a bare value in files= is still a file upload
    name = getattr(content, "name", None)
    if isinstance(name, str) and name and not (name.startswith("<") and name.endswith(">")):
        return os.path.basename(name)
    return field


class MultipartBody:
    """A ``multipart/form-data`` request body, streamed part by part (see the module notes).

    ``content_type`` carries the boundary; ``length`` is the total size, or ``None`` when some
    file's size cannot be known in advance (a pipe).
    """

    def __init__(
        self, data: FormData | None, files: RequestFiles, boundary: bytes | None = None
    ) -> None:
        self.boundary = boundary or os.urandom(16).hex().encode("ascii")
        items = list(files.items()) if isinstance(files, Mapping) else list(files)
        self._parts: list[_Part] = [
            _Part(_header_block(name, None, None, None), value.encode("utf-8"), None, None, 0)
            for name, value in _form_pairs(data or {})
        ]
        for part in self._parts:
            assert part.content is not None
            part.length = len(part.content)
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise InvalidRequest("files= must map field names to files")
            self._parts.append(_file_part(item[0], item[1]))
        self._iterations = 0

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary.decode('ascii')}"

    def _delimiter(self) -> bytes:
        return b"--" + self.boundary + b"\r\n"

    @property
    def length(self) -> int | None:
        total = 0
        for part in self._parts:
            if part.length is None:
                return None
            total += len(self._delimiter()) + len(part.header) + part.length + 2
        return total + len(self.boundary) + 6  # b"--" + boundary + b"--\r\n"

    # What the client's replay logic asks of a body (see _body.replay_position).
    def seekable(self) -> bool:
        """Whether the body can be sent again: every file in it can be rewound."""
        return all(part.file is None or part.start is not None for part in self._parts)

    def tell(self) -> int:
        return 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        # Each iteration rewinds the files itself (__aiter__); nothing to do here.
        return 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        self._iterations += 1
        if self._iterations > 1 and not self.seekable():
            raise InvalidRequest(
                "this multipart body cannot be sent twice: one of its files cannot be rewound"
            )
        for part in self._parts:
            yield self._delimiter() + part.header
            if part.content is not None:
                if part.content:
                    yield part.content
            else:
                async for piece in _read_file(part):
                    yield piece
            yield b"\r\n"
        yield b"--" + self.boundary + b"--\r\n"


async def _read_file(part: _Part) -> AsyncIterator[bytes]:
    file = part.file
    read = file.read
    if inspect.iscoroutinefunction(read):
        if part.start is not None:
            await file.seek(part.start)
        while data := await read(PIECE_SIZE):
            yield _bytes(data)
        return
    if part.start is not None:
        file.seek(part.start)
    while data := await anyio.to_thread.run_sync(read, PIECE_SIZE):
        yield _bytes(data)


def _bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise InvalidRequest(f"a file in files= produced {type(data).__name__}, not bytes")


def encode_request_body(
    *,
    content: Any,
    body: Any,
    data: FormData | None,
    files: RequestFiles | None,
    json: Any,
    headers: Any,
) -> tuple[Any, list[tuple[str, str]]]:
    """The body of a request from ``content=``/``body=``, ``data=``, ``files=`` or ``json=``
    (one of them; ``data=`` may go with ``files=``), and the headers it implies
    (Content-Type, and Content-Length for a multipart body of known size) that ``headers``
    (the request's) does not set already."""
    given = [
        name
        for name, value in (
            ("content=", content),
            ("body=", body),
            ("json=", json),
            ("data=", data if files is None else None),
            ("files=", files),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise InvalidRequest(f"pass one of {' or '.join(given)}, not several")
    has_type = "content-type" in headers
    implied: list[tuple[str, str]] = []
    if files is not None:
        boundary = None
        if has_type:
            boundary = _boundary_of(headers["content-type"])
        multipart = MultipartBody(data, files, boundary)
        if not has_type:
            implied.append(("content-type", multipart.content_type))
        length = multipart.length
        if length is not None and "content-length" not in headers:
            implied.append(("content-length", str(length)))
        return multipart, implied
    if data is not None:
        if not has_type:
            implied.append(("content-type", "application/x-www-form-urlencoded"))
        return encode_form(data), implied
    if json is not None:
        import json as jsonlib

        if not has_type:
            implied.append(("content-type", "application/json"))
        return jsonlib.dumps(json, separators=(",", ":")).encode(), implied
    return (content if content is not None else body), implied


def _boundary_of(content_type: str) -> bytes | None:
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.strip().partition("=")
        if key.strip().lower() == "boundary" and value:
            return value.strip().strip('"').encode("ascii", "replace")
    return None
