"""Adapters between external schemas and the canonical model (floor 3, DESIGN.md §8).

Each module speaks one external format and returns `node.model` objects, never pb2 types or a
peer's field names; `adapters.registry` lists them and `adapters.conformance` checks them all.
"""
