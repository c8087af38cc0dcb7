"""relatlas: continual and federated aggregation of relative latent spaces."""

from pathlib import Path

__version__ = "0.1.0"

# In a source tree (a checkout, or the app bundle Flower unpacks) the layers sit
# beside this folder; an installed wheel has them inside it.
_SOURCE_ROOT = Path(__file__).resolve().parent.parent
if (_SOURCE_ROOT / "server" / "server_app.py").is_file() and str(_SOURCE_ROOT) not in __path__:
    __path__.append(str(_SOURCE_ROOT))
