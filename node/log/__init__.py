"""The exchange log (DESIGN.md §7): the Merkle tree (`merkle`), signed notes and checkpoints
(`notes`), the one writer with group commit (`sequencer`), witnessing (`witness`) and offline
verification (`logverify`)."""
