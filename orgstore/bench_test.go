package orgstore

import (
	"context"
	"log/slog"
	"testing"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/companionsync/companionsync/activities"
)

// benchRecords is the size of the data space copied by the benchmarks.
const benchRecords = 20_000

// clearCopies deletes every companion record copy, outside the timer.
func clearCopies(b *testing.B, s *Store) {
	b.Helper()
	b.StopTimer()
	if _, err := s.sqlDB.Exec(`DELETE FROM companion_records`); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
}

// BenchmarkInitialSync measures the CopyRecords activity (batches of 500,
// heartbeat after each) copying a data space to a companion.
func BenchmarkInitialSync(b *testing.B) {
	s := open(b, benchRecords)
	acts := &activities.Activities{Orgs: s}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	in := activities.CopyInput{Home: "acme", Companion: "acme-emea", DataSpace: "default", BatchSize: 500}
	b.ResetTimer()
	for range b.N {
		clearCopies(b, s)
		env := suite.NewTestActivityEnvironment()
		env.RegisterActivity(acts)
		val, err := env.ExecuteActivity(acts.CopyRecords, in)
		if err != nil {
			b.Fatal(err)
		}
		var p activities.CopyProgress
		if err := val.Get(&p); err != nil || !p.Done || p.Copied != benchRecords {
			b.Fatalf("copy incomplete: %+v, %v", p, err)
		}
	}
	b.ReportMetric(float64(benchRecords*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkPlainSQLCopy measures one INSERT ... SELECT of the same rows, the
// floor that batching, checkpoints and heartbeats add to.
func BenchmarkPlainSQLCopy(b *testing.B) {
	s := open(b, benchRecords)
	ctx := context.Background()
	ds, err := dataSpaceID(ctx, s.db, "acme", "default")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		clearCopies(b, s)
		res, err := s.db.ExecContext(ctx, `
			INSERT INTO companion_records (companion, data_space_id, object, record_id, payload)
			SELECT ?, data_space_id, object, id, payload FROM records WHERE data_space_id = ?`, "acme-emea", ds)
		if err != nil {
			b.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != benchRecords {
			b.Fatalf("copied %d rows, want %d", n, benchRecords)
		}
	}
	b.ReportMetric(float64(benchRecords*b.N)/b.Elapsed().Seconds(), "records/s")
}
