"""The store: tables, engine, migrations and every SQL statement meterql runs."""
