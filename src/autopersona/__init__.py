"""autopersona: connected-vehicle and e-commerce user profiles, turned into measured actions.

The loop is Data → Profile → Scenario → Strategy → Feedback; each stage is a sub-package
(``ingest``, ``features``, ``tags``, ``strategy``, ``delivery``, ``evaluation``) with
``privacy`` running through all of them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
