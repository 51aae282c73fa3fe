"""defacebench: what defacing MRI does to automated image analysis and to privacy.

Reproduces the design of de Sitter et al. (2020), Eur Radiol 30:1062-1074,
"Facing privacy in neuroimaging: removing facial features degrades performance
of image analysis methods", with open, pip-installable methods.
"""

__version__ = "0.1.0"
