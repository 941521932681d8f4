"""The answer path: what a peer's query gets (`decision`), and how it is built and logged."""
