"""torchvision's ImageNet weights for ``pretrained=True``: where they are, fetching them when
they are missing and the internet is reachable, and a clear error before any work when not.

No torch import at module level: BUILD MODEL checks for the file before it reads an image.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from ..errors import DataError, NotFoundError
from .config import TORCHVISION_BACKBONES

#: seconds to wait for the weights' server before saying it cannot be reached
CONNECT_TIMEOUT_S = 5.0


def checkpoints_folder() -> Path:
    """Where torch.hub keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``, by default
    ``~/.cache/torch/hub/checkpoints`` (``torch.hub.get_dir()``'s rule, without torch)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def weights_file(backbone: str) -> Path:
    return checkpoints_folder() / TORCHVISION_BACKBONES[backbone][0]


def _reachable(url: str) -> bool:
    host = urlparse(url).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=CONNECT_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def ensure_weights(backbone: str) -> Path:
    """The ImageNet weights file of ``backbone`` in the hub cache, downloaded first when it
    is missing (torch.hub checks the download against the hash in its name). Raises
    NotFoundError naming the file, the folder and the URL when it is missing and the
    download server cannot be reached."""
    name, url = TORCHVISION_BACKBONES[backbone]
    path = checkpoints_folder() / name
    if path.is_file():
        return path
    if not _reachable(url):
        raise NotFoundError(
            f"BUILD MODEL: pretrained=True needs torchvision's ImageNet weights for {backbone}, "
            f"the file {name}, and it is not in {path.parent}; {urlparse(url).hostname} "
            f"cannot be reached to download it",
            hint=f"On a machine with internet, download {url} and copy it into "
                 f"{path.parent}/ (the folder follows TORCH_HOME), then run the cell again.")
    import torch.hub

    path.parent.mkdir(parents=True, exist_ok=True)
    digest = name.rsplit("-", 1)[-1].split(".")[0]
    torch.hub.download_url_to_file(url, str(path), hash_prefix=digest, progress=False)
    return path


def load_imagenet_state(backbone: str, path: Path) -> dict[str, object]:
    """The weights in ``path`` without the ImageNet classifier; a file that is not
    torchvision's ``backbone`` weights is a DataError naming it."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"it holds a {type(state).__name__}, not a state dict")
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same answer
        raise DataError(f"BUILD MODEL: {path} is not readable as {backbone}'s ImageNet "
                        f"weights ({type(e).__name__}: {str(e)[:160]})",
                        hint="Delete it (it is downloaded again where the internet is "
                             "reachable) or copy the right file there.") from None
    return {k: v for k, v in state.items() if not k.startswith("fc.")}
