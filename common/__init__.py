"""The smallest shared vocabulary of the node's packages (DESIGN.md): the transient and
permanent failure bases every package's errors subclass. Imports nothing of ours."""
