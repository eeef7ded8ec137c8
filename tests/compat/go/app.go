// A Go application's ways of using MySQL with go-sql-driver/mysql (Debian's package),
// through proxyd; run by tests/compat/test_go.py. Prints one JSON object: each check's
// name and what it saw.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	cfg := mysql.NewConfig()
	cfg.User = os.Getenv("DB_USER")
	cfg.Passwd = os.Getenv("DB_PASSWORD")
	cfg.Net = "tcp"
	cfg.Addr = os.Getenv("DB_HOST") + ":" + os.Getenv("DB_PORT")
	cfg.DBName = os.Getenv("DB_NAME")
	cfg.ParseTime = true
	cfg.Params = map[string]string{"charset": "utf8mb4"}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	check(err)
	db.SetMaxOpenConns(8)
	seen := map[string]interface{}{}

	// database/sql's pool under concurrent goroutines; arguments go as server-side
	// prepared statements (interpolateParams is off).
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var n int
			check(db.QueryRow("SELECT ? + 1", i).Scan(&n))
			mu.Lock()
			total += n
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	seen["pool_concurrent"] = total

	_, err = db.Exec("DROP TABLE IF EXISTS go_compat")
	check(err)
	_, err = db.Exec("CREATE TABLE go_compat (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50)," +
		" price DECIMAL(10,2), at DATETIME(6), data LONGBLOB) ENGINE=InnoDB")
	check(err)

	// A prepared statement, executed many times, with binary data and several types.
	blob := make([]byte, 200000)
	_, err = rand.Read(blob)
	check(err)
	at := time.Date(2026, 12, 4, 10, 11, 12, 123456000, time.UTC)
	stmt, err := db.Prepare("INSERT INTO go_compat (name, price, at, data) VALUES (?, ?, ?, ?)")
	check(err)
	var last int64
	for i := 0; i < 10; i++ {
		res, err := stmt.Exec("Zoë 🐘", "12.50", at, blob)
		check(err)
		last, err = res.LastInsertId()
		check(err)
	}
	check(stmt.Close())
	var name, price string
	var gotAt time.Time
	var data []byte
	check(db.QueryRow("SELECT name, price, at, data FROM go_compat WHERE id = ?", last).
		Scan(&name, &price, &gotAt, &data))
	seen["prepared_round_trip"] = name == "Zoë 🐘" && price == "12.50" && gotAt.Equal(at) &&
		bytes.Equal(data, blob)

	// A transaction rolled back, one committed.
	tx, err := db.Begin()
	check(err)
	_, err = tx.Exec("INSERT INTO go_compat (name) VALUES ('rolled back')")
	check(err)
	check(tx.Rollback())
	tx, err = db.Begin()
	check(err)
	_, err = tx.Exec("INSERT INTO go_compat (name) VALUES (?)", "committed")
	check(err)
	check(tx.Commit())
	var names string
	check(db.QueryRow("SELECT GROUP_CONCAT(name) FROM go_compat" +
		" WHERE name IN ('rolled back', 'committed')").Scan(&names))
	seen["transaction"] = names

	// Context cancellation: the driver gives up on the statement and closes its connection;
	// the statement must stop on the server too.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err = db.ExecContext(ctx, "SELECT SLEEP(30) /* go_compat_cancel */")
	cancel()
	seen["cancelled"] = err != nil
	running := -1
	for i := 0; i < 50; i++ {
		check(db.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST" +
			" WHERE INFO LIKE 'SELECT SLEEP(30) /* go_compat_cancel */%'").Scan(&running))
		if running == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	seen["cancelled_statement_running"] = running

	// LOAD DATA LOCAL INFILE of a registered file, on one connection of the pool (the
	// temporary table is that connection's).
	file, err := os.CreateTemp("", "go_compat")
	check(err)
	_, err = file.WriteString("1\tone\n2\ttwo\n3\tcafé\n")
	check(err)
	check(file.Close())
	mysql.RegisterLocalFile(file.Name())
	ctx = context.Background()
	conn, err := db.Conn(ctx)
	check(err)
	_, err = conn.ExecContext(ctx, "CREATE TEMPORARY TABLE go_infile (id INT, name VARCHAR(20))"+
		" CHARACTER SET utf8mb4")
	check(err)
	res, err := conn.ExecContext(ctx, "LOAD DATA LOCAL INFILE '"+file.Name()+"' INTO TABLE go_infile")
	check(err)
	loaded, err := res.RowsAffected()
	check(err)
	var infile string
	check(conn.QueryRowContext(ctx, "SELECT GROUP_CONCAT(name ORDER BY id) FROM go_infile").Scan(&infile))
	seen["load_data_local"] = []interface{}{loaded, infile}
	check(conn.Close())
	check(os.Remove(file.Name()))

	// An error, then the pool goes on.
	_, err = db.Exec("SELECT * FROM no_such_table")
	if me, ok := err.(*mysql.MySQLError); ok {
		seen["error"] = me.Number
	}
	var five int
	check(db.QueryRow("SELECT 5").Scan(&five))
	seen["after_error"] = five

	_, err = db.Exec("DROP TABLE go_compat")
	check(err)
	check(db.Close())
	out, err := json.Marshal(seen)
	check(err)
	fmt.Println(string(out))
}
