"""Benchmarks behind `imgorigin bench ...`: long runs that produce the README's tables (never part of CI)."""
