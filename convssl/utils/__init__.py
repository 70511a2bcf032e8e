"""Small helpers every stage shares: one home each, so that a fix lands everywhere at once.

`convssl.utils` sits at the bottom of the package map (docs/architecture.md): it imports no other
convssl package, and every stage may import it.
"""
