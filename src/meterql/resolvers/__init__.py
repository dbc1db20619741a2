"""Resolvers: check arguments, read through ``meterql.db``, build schema types."""
