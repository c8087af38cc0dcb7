"""relatlas: continual and federated aggregation of relative latent spaces.

``relatlas.run``, ``relatlas.RunConfig`` and ``relatlas.Results`` (``relatlas.api``)
are imported on first use, so ``import relatlas`` stays light.
"""

from pathlib import Path
from typing import Any

__version__ = "0.1.0"

# In a source tree (a checkout, or the app bundle Flower unpacks) the layers sit
# beside this folder; an installed wheel has them inside it.
_SOURCE_ROOT = Path(__file__).resolve().parent.parent
if (_SOURCE_ROOT / "server" / "server_app.py").is_file() and str(_SOURCE_ROOT) not in __path__:
    __path__.append(str(_SOURCE_ROOT))

_API = ("run", "RunConfig", "Results")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from relatlas import api

        return getattr(api, name)
    raise AttributeError(f"module 'relatlas' has no attribute {name!r}")
