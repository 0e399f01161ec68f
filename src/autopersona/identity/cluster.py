"""Connected components of linked accounts, with cannot-link guards.

Accounts are joined by edges in order of strength: same phone, same VIN, same e-mail, then
probabilistic pairs by descending match probability. Plain connected components would let
one wrong edge chain two people together, so a merge is refused when the two groups
*contradict* each other on a strong identifier:

* phone — both groups have phones and no phone of one is one edit from a phone of the
  other (one mistyped, dropped, doubled or swapped digit is tolerated);
* VIN — likewise for VINs (one mistyped character is tolerated).

"One edit" is sharing an entry of the identifiers' deletion neighbourhoods
(:mod:`autopersona.identity.keys`), read from the records' ``phone_near`` / ``vin_near``
when present — keyed entries for pseudonymised identifiers, so the guard decides on
pseudonyms as it does in clear — and computed from the clear value otherwise.

Same-phone edges are never refused (one phone, two cars is a person with two cars); same-VIN
edges are refused on a phone contradiction (a car resold, or shared in a family); e-mail and
probabilistic edges on either contradiction (two people whose names make the same address).
An exact key value shared by contradicting groups links nothing at all (see
:meth:`GuardedUnionFind.union_groups`), so the result does not depend on account order.

Examples
--------
>>> uf = GuardedUnionFind(
...     {"a": {"phone": "+8613800138000"}, "b": {"phone": "+8613911112222"}, "c": {}})
>>> uf.union("a", "c", "email"), uf.union("c", "b", "email"), uf.find("b") == uf.find("a")
(True, False, False)
>>> uf.refused
1
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autopersona.identity.keys import deletion_neighbourhood
from autopersona.privacy.pseudo import is_pseudonym

__all__ = ["EDGE_KINDS", "GuardedUnionFind", "within_one_edit"]

#: Edge kinds, strongest first.
EDGE_KINDS = ("phone", "vin", "email", "probabilistic")


def within_one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are equal or one substitution, insertion or deletion apart.

    Examples
    --------
    >>> within_one_edit("+8613800138000", "+8613800138001"), within_one_edit("ab", "ba")
    (True, False)
    """
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long_ = (a, b) if la < lb else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]


def _contradict(xs: set[frozenset[str]], ys: set[frozenset[str]]) -> bool:
    if not xs or not ys or xs & ys:
        return False
    return not any(x & y for x in xs for y in ys)


def _neighbourhood(rec: Mapping[str, Any], kind: str) -> frozenset[str] | None:
    """The identifier's deletion neighbourhood (stored near keys, or from the clear value)."""
    value = rec.get(kind)
    if not value:
        return None
    near = rec.get(f"{kind}_near")
    if near:
        return frozenset(str(v) for v in near)
    if is_pseudonym(value):  # no stored keys: equality only
        return frozenset({str(value)})
    return frozenset(deletion_neighbourhood(str(value)))


@dataclass
class _Group:
    phones: set[frozenset[str]] = field(default_factory=set)
    vins: set[frozenset[str]] = field(default_factory=set)


class GuardedUnionFind:
    """Union–find over account ids that refuses merges of contradicting groups.

    Parameters
    ----------
    records
        Account id → its prepared record (``phone`` and ``vin`` are read).

    Attributes
    ----------
    refused
        Number of merges refused so far.
    """

    def __init__(self, records: Mapping[str, Mapping[str, Any]]) -> None:
        self._parent: dict[str, str] = {k: k for k in records}
        self._groups: dict[str, _Group] = {}
        for k, rec in records.items():
            g = _Group()
            if (phone := _neighbourhood(rec, "phone")) is not None:
                g.phones.add(phone)
            if (vin := _neighbourhood(rec, "vin")) is not None:
                g.vins.add(vin)
            self._groups[k] = g
        self.refused = 0

    def find(self, x: str) -> str:
        """The representative of ``x``'s group."""
        root = x
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[x] != root:  # path compression
            self._parent[x], x = root, self._parent[x]
        return root

    @staticmethod
    def _conflict(ga: _Group, gb: _Group, kind: str) -> bool:
        if kind == "phone":
            return False
        if _contradict(ga.phones, gb.phones):
            return True
        return kind != "vin" and _contradict(ga.vins, gb.vins)

    def conflicts(self, a: str, b: str, kind: str) -> bool:
        """Whether joining the groups of ``a`` and ``b`` by an edge of ``kind`` is refused."""
        return self._conflict(self._groups[self.find(a)], self._groups[self.find(b)], kind)

    def union(self, a: str, b: str, kind: str) -> bool:
        """Join the groups of ``a`` and ``b`` unless refused.

        Returns
        -------
        bool
            ``True`` when the groups were merged, ``False`` when they already were one or
            the merge was refused.
        """
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if self.conflicts(a, b, kind):
            self.refused += 1
            return False
        # The smaller id becomes the root, so the structure does not depend on edge order
        # more than the merge decisions themselves do.
        root, child = (ra, rb) if ra < rb else (rb, ra)
        self._parent[child] = root
        g, gc = self._groups[root], self._groups.pop(child)
        g.phones |= gc.phones
        g.vins |= gc.vins
        return True

    def components(self) -> list[list[str]]:
        """The groups, each sorted, ordered by their smallest id."""
        out: dict[str, list[str]] = {}
        for k in sorted(self._parent):
            out.setdefault(self.find(k), []).append(k)
        return sorted(out.values(), key=lambda c: c[0])

    def union_groups(self, groups: Iterable[list[str]], kind: str) -> list[list[str]]:
        """Link the accounts of each group (accounts sharing a key value).

        A key value shared by groups that contradict each other identifies none of them (two
        people whose names make the same address; a car that changed hands): such a value
        is *ambiguous* and links nothing, whatever order the accounts come in. The accounts
        it would have linked are left to the probabilistic stage.

        Returns
        -------
        list of list of str
            The groups skipped as ambiguous.

        Examples
        --------
        >>> uf = GuardedUnionFind(
        ...     {"a": {"phone": "+8613800138000"}, "b": {"phone": "+8613911112222"}, "c": {}})
        >>> uf.union_groups([["a", "b", "c"]], "email"), uf.find("c")
        ([['a', 'b', 'c']], 'c')
        >>> uf.union_groups([["a", "c"]], "email"), uf.find("c")
        ([], 'a')
        """
        ambiguous: list[list[str]] = []
        for members in groups:
            roots = sorted({self.find(m) for m in members})
            if len(roots) < 2:
                continue
            if kind != "phone" and any(
                self._conflict(self._groups[x], self._groups[y], kind)
                for i, x in enumerate(roots)
                for y in roots[i + 1 :]
            ):
                ambiguous.append(members)
                continue
            for m in members[1:]:
                self.union(members[0], m, kind)
        return ambiguous
