"""The program cache's loads ahead: the program that ran after this one last time is loaded on a
thread of its own while the process goes on.

Loading an executable releases the GIL; one case run's program at a time, loading took a large
share of a warm run (docs/bench.md). Which program ran after which is kept as links in `next/`
of the cache folder (a file named for one entry, holding the next entry's name), or in
`next-<order>/`: a shard of `--jobs 2` runs every other case, so a one-process run's links
would have it load the wrong programs ahead (and the right ones on the main thread). Each order
keeps links of its own. A link is a hint only: without it, a program loads when called.
"""

from __future__ import annotations

import concurrent.futures
import os


class Ahead:
    """`follow(path, ...)` as each program is called: notes the link from the program before,
    and starts loading the one after (`load(path, backend)`); `take(path)` its load, if started."""

    def __init__(self, folder: str, load, unreadable):
        self.folder = folder
        self.load = load  # (path, backend) -> the executable, or None
        self.unreadable = unreadable  # (path) -> None: a link that could not be read
        self.loader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="program-loader")
        self.pending: dict = {}  # path -> Future of `load(path, backend)`
        self.previous: str | None = None  # the program run last

    def follow(self, path: str, order: str, backend, loaded) -> None:
        """Note that `path` ran after the previous program (in the links of `order`), and start
        loading the program that ran after `path` last time in that order, unless it is
        `loaded` already or loading."""
        folder = os.path.join(self.folder, f"next-{order}" if order else "next")
        if self.previous is not None and self.previous != path:
            link = os.path.join(folder, os.path.basename(self.previous))
            if self._link(link) != os.path.basename(path):
                try:
                    os.makedirs(folder, exist_ok=True)
                    tmp = f"{link}.{os.getpid()}.tmp"
                    with open(tmp, "w") as f:
                        f.write(os.path.basename(path))
                    os.replace(tmp, link)
                except OSError:  # a hint only: without it, the next program loads when called
                    pass
        self.previous = path
        name = self._link(os.path.join(folder, os.path.basename(path)))
        if name is None:
            return
        following = os.path.join(self.folder, name)
        if following != path and following not in loaded and following not in self.pending:
            self.pending[following] = self.loader.submit(self.load, following, backend)

    def take(self, path: str):
        """The load of `path` started ahead, or None."""
        return self.pending.pop(path, None)

    def _link(self, link: str) -> str | None:
        """The entry's name that `link` holds; None where there is none, or it cannot be read
        (rewritten when the program it names next runs after this one)."""
        try:
            with open(link, "rb") as f:
                name = f.read().decode("ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            name = ""
        # An entry's name is a sha256 in hex: anything else would read outside the folder.
        if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
            return name
        self.unreadable(link)
        return None

    def cancel(self) -> None:
        for pending in self.pending.values():
            pending.cancel()
        self.pending.clear()
