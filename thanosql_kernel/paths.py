"""What kind of thing a path names, before anything opens it."""

from __future__ import annotations

import os
import stat

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
    if stat.S_ISREG(kind):
        return None
    return DIRECTORY if stat.S_ISDIR(kind) else "not a regular file (a pipe or a device)"
