"""proxyd: a MySQL/MariaDB connection-pool proxy daemon."""

__version__ = "0.1.0"
