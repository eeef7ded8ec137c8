"""Protocol constants: PyMySQL's public tables plus the few it does not carry."""

from __future__ import annotations

from pymysql.constants import CLIENT, COMMAND, ER, SERVER_STATUS
from pymysql.constants.CR import CR_SERVER_GONE_ERROR, CR_SERVER_LOST

__all__ = [
    "CLIENT",
    "CLIENT_41_AUTH",
    "CLIENT_MYSQL",
    "COMMAND",
    "COM_RESET_CONNECTION",
    "CR_SERVER_GONE_ERROR",
    "CR_SERVER_LOST",
    "ER",
    "MARIADB_CLIENT_EXTENDED_METADATA",
    "MAX_PACKET_PAYLOAD",
    "SERVER_PS_OUT_PARAMS",
    "SERVER_SESSION_STATE_CHANGED",
    "SERVER_STATUS",
    "SERVER_STATUS_IN_TRANS_READONLY",
]

# Payloads this long continue in the next packet (protocol_basic_packets.html).
MAX_PACKET_PAYLOAD = 0xFFFFFF

# Not in PyMySQL's tables (mysql_com.h).
SERVER_PS_OUT_PARAMS = 0x1000  # the result set holds a prepared CALL's OUT parameters
SERVER_STATUS_IN_TRANS_READONLY = 0x2000
SERVER_SESSION_STATE_CHANGED = 0x4000
COM_RESET_CONNECTION = 0x1F

# What every connection proxyd speaks takes for granted: the 4.1 protocol and its
# authentication (plugins, long auth data), transactions in the status, long column flags.
CLIENT_41_AUTH = CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH
CLIENT_41_AUTH |= CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT.TRANSACTIONS | CLIENT.LONG_FLAG

# MariaDB: a peer that leaves CLIENT_MYSQL (the old CLIENT_LONG_PASSWORD bit) out of its
# capabilities puts MariaDB's extended capabilities in the handshake's reserved bytes.
CLIENT_MYSQL = 1
MARIADB_CLIENT_EXTENDED_METADATA = 1 << 3  # column definitions say json, uuid, inet6...

# Session-state-change entry types (mysql_com.h enum_session_state_type).
SESSION_TRACK_SYSTEM_VARIABLES = 0
SESSION_TRACK_SCHEMA = 1
SESSION_TRACK_STATE_CHANGE = 2
SESSION_TRACK_GTIDS = 3
SESSION_TRACK_TRANSACTION_CHARACTERISTICS = 4
SESSION_TRACK_TRANSACTION_STATE = 5
