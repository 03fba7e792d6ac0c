"""What kind of thing a path names, before anything opens it."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

#: what ``not_a_file`` answers for a folder
DIRECTORY = "a directory"


def not_a_file(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a regular file to read (a directory, a pipe …), or None.

    A pipe would block its reader until someone writes to it, past any stop button; a path
    with a NUL byte names nothing. A missing path raises FileNotFoundError, as opening would.
    """
    try:
        kind = os.stat(path).st_mode
    except ValueError:
        return "not a valid path (it holds a NUL character)"
    except FileNotFoundError:
        raise
    except OSError as e:   # a loop of links, a name too long, a folder that is a file …
        return f"not readable ({e.strerror or e})"
    return _mode_problem(kind)


def _mode_problem(mode: int) -> str | None:
    """Why a file of this stat mode is not one to read (None: a regular file)."""
    if stat.S_ISREG(mode):
        return None
    return DIRECTORY if stat.S_ISDIR(mode) else "not a regular file (a pipe or a device)"


#: the first bytes of the image formats the kernel meets most, and the bytes a whole file of
#: that format ends with (None: no fixed end to check)
_SIGNATURES: tuple[tuple[bytes, str, bytes | None], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG", b"IEND\xaeB`\x82"),
    (b"\xff\xd8\xff", "JPEG", b"\xff\xd9"),
    (b"GIF87a", "GIF", b";"), (b"GIF89a", "GIF", b";"),
    (b"BM", "BMP", None), (b"II*\x00", "TIFF", None), (b"MM\x00*", "TIFF", None),
)


def image_problem(path: str) -> str | None:
    """Why the file at ``path`` cannot be read as an image ("missing", "not an image (…)",
    "truncated (…)", "a directory" …), or None, cheaply: its first bytes and its last few are
    read (one open, one fstat, two preads: about 10 µs a file), and only a file that fails
    that look is decoded with Pillow, to say why."""
    try:
        # non-blocking, so a pipe answers at once instead of waiting for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return "missing"
    except ValueError:
        return "not a valid path (it holds a NUL character)"
    except OSError as e:
        return f"not readable ({e.strerror or e})"
    try:
        info = os.fstat(fd)
        problem = _mode_problem(info.st_mode)
        if problem is not None:
            return problem
        size = info.st_size
        head = os.pread(fd, 16, 0)
        known = None
        for magic, kind, end in _SIGNATURES:
            if head.startswith(magic):
                if end is None or end in os.pread(fd, len(end) + 16, max(0, size - len(end) - 16)):
                    return None
                known = kind   # no proper end: decode it to tell
                break
    except OSError as e:
        return f"not readable ({e.strerror or e})"
    finally:
        os.close(fd)
    if size == 0:
        return "not an image (the file is empty)"
    # another format (WebP, ...): Pillow reads its header, and decoding tells the rest later
    return _decoding_problem(path, known)


def _decoding_problem(path: str, known: str | None) -> str | None:
    """What Pillow says when it opens the file, and when it decodes all of it for a ``known``
    format whose end is missing (None: it does)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            kind = image.format or "image"
            try:
                if known:
                    image.load()
            except Image.DecompressionBombError:
                raise
            except Exception as e:  # noqa: BLE001 - its words are the answer
                return f"truncated or damaged {kind} ({_first_line(e)})"
    except Image.DecompressionBombError:
        return "not read (it claims more pixels than Pillow's limit against decompression bombs)"
    except Exception as e:  # noqa: BLE001 - its words are the answer
        if known:   # it starts as one, and breaks off
            return f"truncated or damaged {known} ({_first_line(e)})"
        return f"not an image ({_first_line(e)})"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:120] if text else type(error).__name__


#: what a full disk says, through the layers that report it in words (SQLite, torch's writer)
_FULL_WORDS = ("no space left on device", "database or disk is full", "disk quota exceeded",
               "could not extend file", "disk full")


def disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` (or what caused it) is a full disk (or a quota reached)."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if getattr(error, "sqlite_errorname", None) == "SQLITE_FULL" or \
                getattr(error, "sqlstate", None) == "53100":   # PostgreSQL's disk_full
            return True
        if any(words in str(error).lower() for words in _FULL_WORDS):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def free_space(path: str | os.PathLike[str]) -> int | None:
    """The bytes free on the disk of ``path`` (or of its nearest folder that exists)."""
    place = Path(path)
    for folder in (place, *place.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None
