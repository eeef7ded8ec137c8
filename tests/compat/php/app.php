<?php
// A PHP application's ways of using MySQL, through proxyd; run by tests/compat/test_php.py.
// Prints one JSON object: each check's name and what it saw.
declare(strict_types=1);
mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);

$host = getenv('DB_HOST');
$port = (int) getenv('DB_PORT');
$user = getenv('DB_USER');
$pass = getenv('DB_PASSWORD');
$db = getenv('DB_NAME');
$seen = [];

// Connect per request, as PHP-FPM pages do: connect, one query, close.
$ids = [];
for ($i = 0; $i < 30; $i++) {
    $m = new mysqli($host, $user, $pass, $db, $port);
    $ids[] = (int) $m->query('SELECT CONNECTION_ID()')->fetch_row()[0];
    $m->close();
}
$seen['connect_per_request'] = count(array_unique($ids));

// Persistent connections ("p:" host): reused within the process, reset on reuse.
$p = new mysqli("p:$host", $user, $pass, $db, $port);
$p->query('SET @left_behind = 1');
$first = (int) $p->query('SELECT CONNECTION_ID()')->fetch_row()[0];
$p->close();
$p = new mysqli("p:$host", $user, $pass, $db, $port);
$second = (int) $p->query('SELECT CONNECTION_ID()')->fetch_row()[0];
$seen['persistent_reused'] = $first === $second;
$p->close();

$m = new mysqli($host, $user, $pass, $db, $port);
$m->set_charset('utf8mb4');
$m->query('DROP TABLE IF EXISTS php_compat');
$m->query('CREATE TABLE php_compat (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50),'
    . ' price DECIMAL(10,2), ratio DOUBLE, born DATE, at DATETIME(6), data LONGBLOB,'
    . ' note TEXT CHARACTER SET latin1) ENGINE=InnoDB');

// Server-side prepared statements (mysqlnd: COM_STMT_PREPARE / EXECUTE), with long data.
$stmt = $m->prepare('INSERT INTO php_compat (name, price, ratio, born, at, data, note)'
    . ' VALUES (?, ?, ?, ?, ?, ?, ?)');
$name = 'Zoë 🐘';
$price = '12.50';
$ratio = 0.125;
$born = '1999-12-31';
$at = '2026-12-04 10:11:12.123456';
$data = null;
$note = 'café';
$stmt->bind_param('ssdssbs', $name, $price, $ratio, $born, $at, $data, $note);
$blob = random_bytes(300000) . "\0\xff";
foreach (str_split($blob, 65536) as $chunk) {
    $stmt->send_long_data(5, $chunk);
}
$stmt->execute();
$id = $m->insert_id;
$stmt->close();
$stmt = $m->prepare('SELECT name, price, ratio, born, at, data, note FROM php_compat WHERE id = ?');
$stmt->bind_param('i', $id);
$stmt->execute();
$row = $stmt->get_result()->fetch_assoc();
$seen['prepared_round_trip'] = $row['name'] === $name && $row['price'] === $price
    && $row['ratio'] === $ratio && $row['born'] === $born && $row['at'] === $at
    && $row['data'] === $blob && $row['note'] === $note;
$stmt->close();

// A read-only cursor (COM_STMT_FETCH, one row at a time in mysqlnd).
$stmt = $m->prepare('SELECT seq, REPEAT(\'x\', seq) FROM seq_1_to_7 WHERE seq > ?');
$stmt->attr_set(MYSQLI_STMT_ATTR_CURSOR_TYPE, MYSQLI_CURSOR_TYPE_READ_ONLY);
$low = 4;
$stmt->bind_param('i', $low);
$stmt->execute();
$stmt->bind_result($n, $xs);
$fetched = [];
while ($stmt->fetch()) {
    $fetched[] = [$n, $xs];
}
$stmt->close();
$seen['cursor_fetch'] = $fetched;

// LOAD DATA LOCAL INFILE (allowed on both sides: the option here, php -d in the test).
$file = tempnam(sys_get_temp_dir(), 'php_compat');
file_put_contents($file, "1\tone\n2\ttwo\n3\tcafé\n");
$local = mysqli_init();
$local->options(MYSQLI_OPT_LOCAL_INFILE, true);
$local->real_connect($host, $user, $pass, $db, $port);
$local->set_charset('utf8mb4');
$local->query('CREATE TEMPORARY TABLE php_infile (id INT, name VARCHAR(20)) CHARACTER SET utf8mb4');
$local->query("LOAD DATA LOCAL INFILE '$file' INTO TABLE php_infile");
$seen['load_data_local'] = [$local->affected_rows,
    $local->query('SELECT name FROM php_infile ORDER BY id')->fetch_all()];
$local->close();
unlink($file);

// A transaction, rolled back and committed.
$m->begin_transaction();
$m->query("INSERT INTO php_compat (name) VALUES ('rolled back')");
$m->rollback();
$m->begin_transaction();
$m->query("INSERT INTO php_compat (name) VALUES ('committed')");
$m->commit();
$seen['transactions'] = $m->query(
    "SELECT GROUP_CONCAT(name ORDER BY id) FROM php_compat WHERE name IN ('rolled back', 'committed')"
)->fetch_row()[0];

// Several result sets from one multi_query.
$m->multi_query('SELECT 1; SELECT 2, 3; DO 0; SELECT 4');
$sets = [];
do {
    if ($r = $m->store_result()) {
        $sets[] = $r->fetch_all();
        $r->free();
    }
} while ($m->more_results() && $m->next_result());
$seen['multi_results'] = $sets;

// A compressed connection asked for: proxyd does not offer compression, but mysqlnd asks
// anyway; proxyd declines with an error instead of a hang.
$c = mysqli_init();
try {
    $c->real_connect($host, $user, $pass, $db, $port, null, MYSQLI_CLIENT_COMPRESS);
    $seen['compress'] = (int) $c->query('SELECT 41 + 1')->fetch_row()[0];
    $c->close();
} catch (mysqli_sql_exception $e) {
    $seen['compress'] = [$e->getCode(), str_contains($e->getMessage(), 'compress')];
}

// A statement error is an exception, and the connection goes on.
try {
    $m->query('SELECT * FROM no_such_table');
    $seen['error'] = null;
} catch (mysqli_sql_exception $e) {
    $seen['error'] = $e->getCode();
}
$seen['after_error'] = (int) $m->query('SELECT 5')->fetch_row()[0];
$m->close();

// PDO with native prepared statements.
$pdo = new PDO("mysql:host=$host;port=$port;dbname=$db;charset=utf8mb4", $user, $pass, [
    PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
    PDO::ATTR_EMULATE_PREPARES => false,
]);
$q = $pdo->prepare('SELECT id, name, price FROM php_compat WHERE id = :id');
$q->execute(['id' => $id]);
$r = $q->fetch(PDO::FETCH_ASSOC);
$seen['pdo_native_types'] = [gettype($r['id']), $r['name'], $r['price']];
$pdo->beginTransaction();
$pdo->prepare('UPDATE php_compat SET ratio = ? WHERE id = ?')->execute([0.5, $id]);
$pdo->commit();
$seen['pdo_transaction'] = (float) $pdo->query("SELECT ratio FROM php_compat WHERE id = $id")
    ->fetchColumn();
$pdo->exec('DROP TABLE php_compat');

echo json_encode($seen), "\n";
