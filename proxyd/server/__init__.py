"""A connection from proxyd to a MySQL/MariaDB server: whom it logs in as (account.py),
the server session's setup (setup.py) apart from the socket, login and forwarding
(connection.py). Nothing here knows a client session's type."""
