"""The node catalog: every ``type:`` a FluxGraph node can have, with schemas, needs and costs.

``registry`` holds the mechanism; ``builtin`` registers the types FLUXGRAPH.md promises, the same way an
extension would.
"""
