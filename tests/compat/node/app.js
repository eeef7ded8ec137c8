// A Node.js application's ways of using MySQL with mysql2, through proxyd; run by
// tests/compat/test_node.py. Prints one JSON object: each check's name and what it saw.
'use strict';
const mysql = require('mysql2/promise');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

const config = {
  host: process.env.DB_HOST,
  port: Number(process.env.DB_PORT),
  user: process.env.DB_USER,
  password: process.env.DB_PASSWORD,
  database: process.env.DB_NAME,
  charset: 'utf8mb4',
};

async function main() {
  const seen = {};
  const pool = mysql.createPool({ ...config, connectionLimit: 8, multipleStatements: true });

  // A pool's connections used by many concurrent requests.
  const sums = await Promise.all(
    Array.from({ length: 40 }, (_, i) => pool.query('SELECT ? + 1 AS n', [i]))
  );
  seen.pool_concurrent = sums.reduce((acc, [rows]) => acc + Number(rows[0].n), 0);

  await pool.query('DROP TABLE IF EXISTS node_compat');
  await pool.query(
    'CREATE TABLE node_compat (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50),' +
      ' price DECIMAL(10,2), born DATE, data LONGBLOB) ENGINE=InnoDB'
  );

  // execute(): server-side prepared statements, cached per connection by mysql2.
  const blob = crypto.randomBytes(200000);
  const [ins] = await pool.execute(
    'INSERT INTO node_compat (name, price, born, data) VALUES (?, ?, ?, ?)',
    ['Zoë 🐘', '12.50', '1999-12-31', blob]
  );
  let ok = true;
  for (let i = 0; i < 20; i++) {
    const [rows] = await pool.execute(
      'SELECT name, price, DATE_FORMAT(born, "%Y-%m-%d") AS born, data FROM node_compat WHERE id = ?',
      [ins.insertId]
    );
    const r = rows[0];
    ok = ok && r.name === 'Zoë 🐘' && r.price === '12.50' && r.born === '1999-12-31' &&
      Buffer.compare(r.data, blob) === 0;
  }
  seen.execute_round_trip = ok;

  // A packet over 16 MiB each way (the protocol splits it in two).
  const big = crypto.randomBytes(17 * 1024 * 1024);
  const [bigIns] = await pool.execute('INSERT INTO node_compat (data) VALUES (?)', [big]);
  const [bigRows] = await pool.query('SELECT data FROM node_compat WHERE id = ?', [bigIns.insertId]);
  seen.over_16_mib = Buffer.compare(bigRows[0].data, big) === 0;

  // A transaction on one connection of the pool.
  const conn = await pool.getConnection();
  await conn.beginTransaction();
  await conn.query("INSERT INTO node_compat (name) VALUES ('rolled back')");
  await conn.rollback();
  await conn.beginTransaction();
  await conn.query("INSERT INTO node_compat (name) VALUES ('committed')");
  await conn.commit();
  const [names] = await conn.query(
    "SELECT GROUP_CONCAT(name) AS n FROM node_compat WHERE name IN ('rolled back', 'committed')"
  );
  seen.transaction = names[0].n;

  // Several statements in one query, several result sets.
  const [sets] = await conn.query('SELECT 1 AS a; SELECT 2 AS b, 3 AS c; DO 0');
  seen.multi_statements = [sets[0][0].a, sets[1][0].b, sets[1][0].c, sets[2].affectedRows];

  // changeUser (COM_CHANGE_USER): the session is reset, the connection goes on.
  await conn.query('SET @left_behind = 1');
  await conn.changeUser({ user: config.user, password: config.password, database: config.database });
  const [after] = await conn.query('SELECT @left_behind AS v');
  seen.change_user_resets = after[0].v;
  conn.release();

  // A large result streamed row by row, with the client pausing as it reads.
  const raw = await mysql.createConnection({ ...config, flags: ['+LOCAL_FILES'] });
  const stream = raw.connection
    .query('SELECT seq, REPEAT("x", 1000) AS pad FROM seq_1_to_50000')
    .stream({ highWaterMark: 100 });
  let count = 0;
  for await (const row of stream) {
    count += 1;
    if (count % 10000 === 0) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  seen.streamed_rows = count;

  // LOAD DATA LOCAL INFILE: the client sends the file when the server asks for it.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node_compat'));
  fs.writeFileSync(path.join(dir, 'rows.tsv'), '1\tone\n2\ttwo\n3\tcafé\n');
  await raw.query('CREATE TEMPORARY TABLE node_infile (id INT, name VARCHAR(20)) CHARACTER SET utf8mb4');
  const [loaded] = await raw.query({
    sql: "LOAD DATA LOCAL INFILE 'rows.tsv' INTO TABLE node_infile",
    infileStreamFactory: (name) => fs.createReadStream(path.join(dir, name)),
  });
  const [infile] = await raw.query('SELECT name FROM node_infile ORDER BY id');
  seen.load_data_local = [loaded.affectedRows, infile.map((r) => r.name)];
  fs.rmSync(dir, { recursive: true });

  // A statement error, then the connection goes on.
  try {
    await raw.query('SELECT * FROM no_such_table');
    seen.error = null;
  } catch (e) {
    seen.error = e.errno;
  }
  const [five] = await raw.query('SELECT 5 AS v');
  seen.after_error = five[0].v;
  await raw.end();

  await pool.query('DROP TABLE node_compat');
  await pool.end();
  console.log(JSON.stringify(seen));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
