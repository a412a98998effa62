"""The Hugging Face hub, asked only when it answers.

A hub id that cannot be reached otherwise costs 30-50 s of retries and a screenful of warnings
before the libraries give up. One quick TCP connect (a few seconds at most, once per process)
tells whether the hub answers; when it does not, the libraries are switched to offline mode, so
a model or dataset already in the local Hugging Face cache still loads and anything else fails
at once with bertsent's one-line message.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

PROBE_SECONDS = 3.0


@functools.lru_cache(maxsize=1)
def hub_answers() -> bool:
    """False when offline mode is set or the hub's host cannot be reached (then offline mode
    is switched on for huggingface_hub, transformers and datasets)."""
    import datasets.config
    import huggingface_hub.constants as hub_constants

    if hub_constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", port),
                                 timeout=PROBE_SECONDS).close()
        return True
    except OSError:
        hub_constants.HF_HUB_OFFLINE = True
        datasets.config.HF_HUB_OFFLINE = True
        return False
