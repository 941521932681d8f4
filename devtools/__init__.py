"""Development tooling kept out of the installed `node` package: a federation of node homes on
one machine (`federation`, used by the tests and benchmarks) and `make demo` (`demo`)."""
