"""icm-plugin: unsupervised label elicitation with Internal Coherence Maximization (Wen et al. 2025)."""

from icm_plugin.errors import ICMError
from icm_plugin.examples import Example

__all__ = ["ICMError", "Example"]
__version__ = "0.1.0"
