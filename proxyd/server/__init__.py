"""A connection from proxyd to a MySQL/MariaDB server: login and the server session's
setup (setup.py) apart from the socket and forwarding (connection.py). Nothing here knows
a client session's type."""
