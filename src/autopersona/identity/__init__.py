"""Identity linkage: the one person behind a VIN, app, e-commerce and dealer accounts.

Paper 003's unified ID / MDM: :func:`link_identities` normalises identifiers, links accounts
by exact keys and a Splink model, and writes ``identity_links`` and ``persons`` with stable
person ids (see :mod:`autopersona.identity.link`).
"""

from autopersona.identity.link import LinkReport, link_identities

__all__ = ["LinkReport", "link_identities"]
