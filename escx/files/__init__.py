"""File-system safety: where an output really lands, and folder scans that always finish.

* :mod:`escx.files.targets` decides what writing to a path means: a regular file is replaced
  atomically (:mod:`escx.atomic`), a symbolic link has its target replaced and stays a link, a
  FIFO or character device (``/dev/null``, a pipe to a player) is written directly and never
  replaced, anything else (a directory, a block device, a socket, a dangling link) is refused.
* :mod:`escx.files.scan` walks folders recursively, following symbolic links but entering every
  real folder once, so link loops neither hang a scan nor count a file twice.
* :mod:`escx.files.audio_writer` writes decoded audio piece by piece to any of those outputs.
"""
