"""landscape: loss-landscape geometry of trained PyTorch models.

Hessian spectra, flatness metrics, filter-normalized loss surfaces and basin measures.
The core never plots or prints; see ``landscape.viz`` and the ``landscape`` command.
"""

from landscape.errors import LandscapeError
from landscape.io.save import save

__version__ = "0.1.0"

__all__ = ["LandscapeError", "__version__", "save"]
