"""What a file or option given to escx may choose, and how much it may ask for.

Configs (``--config`` files, command-line options) and checkpoints come from anywhere: a
colleague, a sweep file, a downloaded model. Two rules keep reading them safe:

* :mod:`escx.security.class_paths`: a class named in them is never imported on their say-so.
  Bare names resolve through escx's registries (and the classes already loaded); a dotted path
  must lie inside a trusted package (escx, the parts of torch and Lightning a run configures,
  declared ``escx.plugins`` packages, and ``$ESCX_TRUSTED_MODULES``), checked before any import.
* :mod:`escx.security.limits`: sizes are checked before anything is allocated: config files,
  expanded YAML trees (alias bombs), nested structures read from checkpoints;
  :mod:`escx.security.resources`: training crops, batches and worker processes.
"""

from escx.security.class_paths import (
    TRUST_ENV,
    UntrustedClassPath,
    check_class_path,
    import_policy,
    is_trusted,
    trusted_prefixes,
    untrusted_message,
)
from escx.security.limits import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_DEPTH,
    MAX_CONFIG_NODES,
    SizeLimitError,
    check_tree_size,
    load_yaml_text,
    read_yaml_file,
)

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_DEPTH",
    "MAX_CONFIG_NODES",
    "TRUST_ENV",
    "SizeLimitError",
    "UntrustedClassPath",
    "check_class_path",
    "check_tree_size",
    "import_policy",
    "is_trusted",
    "load_yaml_text",
    "read_yaml_file",
    "trusted_prefixes",
    "untrusted_message",
]
