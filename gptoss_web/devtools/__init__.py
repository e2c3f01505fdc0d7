"""Tools for development and tests, never imported by a serving process: the tiny gpt-oss model generator,
the benchmarks behind `make bench`, and the process stack that tests and benchmarks start."""
