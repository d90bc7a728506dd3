"""Reference implementations: second statements of production rules, written
differently, that tests (and benchmarks) compare the production code with."""
