"""Helpers the tests and the benchmarks share: servers, sockets and clients the portal itself never uses."""
