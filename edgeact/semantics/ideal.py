"""The ideal semantics: float64 arithmetic, round half to even (the base class as is)."""
from edgeact.semantics.base import Semantics

SEMANTICS = Semantics()
