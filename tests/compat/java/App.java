// A Java application's ways of using MySQL with MariaDB Connector/J (Debian's
// libmariadb-java), through proxyd; run by tests/compat/test_java.py as a single source
// file. Prints one JSON object: each check's name and what it saw.
import java.math.BigDecimal;
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;

public class App {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:mariadb://" + System.getenv("DB_HOST") + ":" + System.getenv("DB_PORT")
            + "/" + System.getenv("DB_NAME")
            + "?useServerPrepStmts=true&characterEncoding=utf8mb4&allowLocalInfile=true";
        String user = System.getenv("DB_USER");
        String password = System.getenv("DB_PASSWORD");
        Map<String, Object> seen = new LinkedHashMap<>();
        try (Connection c = DriverManager.getConnection(url, user, password)) {
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS java_compat");
                s.execute("CREATE TABLE java_compat (id INT AUTO_INCREMENT PRIMARY KEY,"
                    + " name VARCHAR(50), price DECIMAL(10,2), data BLOB) ENGINE=InnoDB");
            }
            // Server-side prepared statements, a batch insert.
            byte[] blob = new byte[60000];
            new Random(7).nextBytes(blob);
            try (PreparedStatement p = c.prepareStatement(
                    "INSERT INTO java_compat (name, price, data) VALUES (?, ?, ?)")) {
                for (int i = 0; i < 100; i++) {
                    p.setString(1, "Zoë 🐘 " + i);
                    p.setBigDecimal(2, new BigDecimal("12.50"));
                    p.setBytes(3, blob);
                    p.addBatch();
                }
                int[] counts = p.executeBatch();
                seen.put("batch_rows", Arrays.stream(counts).map(n -> n == Statement.SUCCESS_NO_INFO ? 1 : n).sum());
            }
            try (PreparedStatement p = c.prepareStatement(
                    "SELECT name, price, data FROM java_compat WHERE name = ?")) {
                boolean ok = true;
                for (int i = 0; i < 100; i += 7) {
                    p.setString(1, "Zoë 🐘 " + i);
                    try (ResultSet r = p.executeQuery()) {
                        ok &= r.next() && r.getString(1).equals("Zoë 🐘 " + i)
                            && r.getBigDecimal(2).equals(new BigDecimal("12.50"))
                            && Arrays.equals(r.getBytes(3), blob);
                    }
                }
                seen.put("prepared_round_trip", ok);
            }
            // A transaction rolled back, one committed.
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.executeUpdate("INSERT INTO java_compat (name) VALUES ('rolled back')");
                c.rollback();
                s.executeUpdate("INSERT INTO java_compat (name) VALUES ('committed')");
                c.commit();
            }
            c.setAutoCommit(true);
            try (Statement s = c.createStatement();
                 ResultSet r = s.executeQuery("SELECT GROUP_CONCAT(name) FROM java_compat"
                     + " WHERE name IN ('rolled back', 'committed')")) {
                r.next();
                seen.put("transaction", r.getString(1));
            }
            // Statement.cancel(): Connector/J sends KILL QUERY <the handshake's thread id>
            // from another connection; proxyd must stop this statement, and only it.
            try (Statement s = c.createStatement()) {
                ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
                timer.schedule(() -> { s.cancel(); return null; }, 500, TimeUnit.MILLISECONDS);
                long started = System.nanoTime();
                try {
                    s.executeQuery("SELECT SLEEP(30)").close();
                    seen.put("cancel", "not cancelled");
                } catch (SQLException e) {
                    seen.put("cancel", e.getErrorCode());
                }
                seen.put("cancel_within_5s", System.nanoTime() - started < 5_000_000_000L);
                timer.shutdown();
            }
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT 5")) {
                r.next();
                seen.put("after_cancel", r.getInt(1));
            }
            // LOAD DATA LOCAL INFILE: the driver sends the file when the server asks for it.
            java.nio.file.Path file = java.nio.file.Files.createTempFile("java_compat", ".tsv");
            java.nio.file.Files.writeString(file, "1\tone\n2\ttwo\n3\tcafé\n");
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TEMPORARY TABLE java_infile (id INT, name VARCHAR(20))"
                    + " CHARACTER SET utf8mb4");
                int loaded = s.executeUpdate("LOAD DATA LOCAL INFILE '" + file + "'"
                    + " INTO TABLE java_infile CHARACTER SET utf8mb4");
                try (ResultSet r = s.executeQuery(
                        "SELECT GROUP_CONCAT(name ORDER BY id) FROM java_infile")) {
                    r.next();
                    seen.put("load_data_local", loaded + " " + r.getString(1));
                }
                s.execute("DROP TEMPORARY TABLE java_infile");
            }
            java.nio.file.Files.delete(file);
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE java_compat");
            }
        }
        StringBuilder out = new StringBuilder("{");
        for (Map.Entry<String, Object> e : seen.entrySet()) {
            if (out.length() > 1) out.append(", ");
            Object v = e.getValue();
            out.append('"').append(e.getKey()).append("\": ")
               .append(v instanceof String ? "\"" + v + "\"" : String.valueOf(v));
        }
        System.out.println(out.append("}"));
    }
}
