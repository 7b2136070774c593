package orgstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/orgstore"
	"github.com/companionsync/companionsync/orgstore/storetest"
)

// BenchmarkDataMovement copies a data space to a companion and removes it
// again, the product's way (the CopyRecords and RemoveRecords activities,
// step after step with the production batch size and step budget) and the
// plain way (one INSERT … SELECT … ON CONFLICT DO UPDATE, the product's
// upsert, and one DELETE, each in one transaction), side by side on the same
// database and connection settings, on SQLite and PostgreSQL:
//
//	COMPANIONSYNC_BENCH_RECORDS=1000000 go test ./orgstore -run '^$' -bench DataMovement -benchtime 1x -timeout 60m
//
// It reports each rate in records/s and the product's over the plain one
// (copy-ratio, remove-ratio).
func BenchmarkDataMovement(b *testing.B) {
	records := 200_000
	if v := os.Getenv("COMPANIONSYNC_BENCH_RECORDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("COMPANIONSYNC_BENCH_RECORDS=%q: want a positive whole number", v)
		}
		records = n
	}
	b.Run("sqlite", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "orgs.db")
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Set("_txlock", "immediate")
		movement(b, path, "sqlite", path+"?"+q.Encode(), records)
	})
	b.Run("postgres", func(b *testing.B) {
		u := storetest.NewPostgresDatabase(b, "bench")
		movement(b, u, "pgx", u, records)
	})
}

func movement(b *testing.B, target, driver, dsn string, records int) {
	ctx := context.Background()
	store, err := orgstore.Open(ctx, target)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	seeded := time.Now()
	if err := store.Demo().Seed(ctx, orgstore.SeedOptions{RecordsPerDataSpace: records}); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d records in %s", records, time.Since(seeded).Round(time.Millisecond))
	raw, err := sql.Open(driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	bind := func(q string) string {
		if driver != "pgx" {
			return q
		}
		out, n := []byte{}, 0
		for i := 0; i < len(q); i++ {
			if q[i] == '?' {
				n++
				out = append(out, fmt.Sprintf("$%d", n)...)
				continue
			}
			out = append(out, q[i])
		}
		return string(out)
	}
	var ds int64
	if err := raw.QueryRowContext(ctx, bind(`SELECT id FROM data_spaces WHERE home = ? AND name = ?`), "acme", "default").Scan(&ds); err != nil {
		b.Fatal(err)
	}
	settings := contract.DefaultSettings()
	acts := &activities.Activities{Orgs: store}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	count := func() int {
		var n int
		if err := raw.QueryRowContext(ctx, bind(`SELECT COUNT(*) FROM companion_records WHERE companion = ? AND data_space_id = ?`), "acme-emea", ds).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	productCopy := func() {
		in := activities.CopyInput{Home: "acme", Companion: "acme-emea", DataSpace: "default", BatchSize: settings.BatchSize, Budget: settings.StepBudget}
		for {
			env := suite.NewTestActivityEnvironment()
			env.RegisterActivity(acts)
			val, err := env.ExecuteActivity(acts.CopyRecords, in)
			if err != nil {
				b.Fatal(err)
			}
			var p activities.CopyProgress
			if err := val.Get(&p); err != nil {
				b.Fatal(err)
			}
			if p.Done {
				return
			}
			in.After = p.After
		}
	}
	productRemove := func() {
		in := activities.RemoveInput{Home: "acme", Companion: "acme-emea", DataSpace: "default", BatchSize: settings.BatchSize, Budget: settings.StepBudget}
		for {
			env := suite.NewTestActivityEnvironment()
			env.RegisterActivity(acts)
			val, err := env.ExecuteActivity(acts.RemoveRecords, in)
			if err != nil {
				b.Fatal(err)
			}
			var p activities.RemoveProgress
			if err := val.Get(&p); err != nil {
				b.Fatal(err)
			}
			if p.Done {
				return
			}
		}
	}
	inTx := func(q string, args ...any) {
		tx, err := raw.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, bind(q), args...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	plainCopy := func() {
		inTx(`INSERT INTO companion_records (companion, data_space_id, object, record_id, payload)
			SELECT ?, data_space_id, object, id, payload FROM records WHERE data_space_id = ?
			ON CONFLICT (companion, data_space_id, object, record_id) DO UPDATE SET payload = excluded.payload`, "acme-emea", ds)
	}
	plainRemove := func() {
		inTx(`DELETE FROM companion_records WHERE companion = ? AND data_space_id = ?`, "acme-emea", ds)
	}
	var took [4]time.Duration
	timed := func(i int, fn func(), wantAfter int) {
		start := time.Now()
		fn()
		took[i] += time.Since(start)
		if got := count(); got != wantAfter {
			b.Fatalf("step %d: %d records in the companion, want %d", i, got, wantAfter)
		}
	}
	b.ResetTimer()
	for range b.N {
		// Alternated, so that neither side always runs on a warmer cache.
		timed(0, productCopy, records)
		timed(1, productRemove, 0)
		timed(2, plainCopy, records)
		timed(3, plainRemove, 0)
	}
	rate := func(d time.Duration) float64 { return float64(records*b.N) / d.Seconds() }
	b.ReportMetric(rate(took[0]), "copy-records/s")
	b.ReportMetric(rate(took[2]), "plain-copy-records/s")
	b.ReportMetric(rate(took[1]), "remove-records/s")
	b.ReportMetric(rate(took[3]), "plain-delete-records/s")
	b.ReportMetric(took[2].Seconds()/took[0].Seconds(), "copy-ratio")
	b.ReportMetric(took[3].Seconds()/took[1].Seconds(), "remove-ratio")
}
