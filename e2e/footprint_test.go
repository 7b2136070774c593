package e2e

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// BenchmarkIdleConnections measures the memory of the whole local system
// (in-process server, worker, store) holding 100 idle connections:
//
//	go test ./e2e -run '^$' -bench IdleConnections -benchtime 1x
func BenchmarkIdleConnections(b *testing.B) {
	const n = 100
	settings := testenv.FastSettings()
	settings.HealthCheckInterval = 30 * time.Second
	for range b.N {
		env := testenv.Start(b, testenv.Options{Settings: settings, SeedRecords: 100})
		ctx := context.Background()
		before := rssKiB(b)
		if err := env.Store.Demo().AddOrg(ctx, companionsync.Org{ID: "bench", Role: companionsync.RoleHome, Kind: companionsync.KindProduction,
			LicenceExpiresAt: time.Now().AddDate(1, 0, 0), MaxCompanions: n}); err != nil {
			b.Fatal(err)
		}
		c := control.New(env.Client)
		start := time.Now()
		for i := range n {
			id := fmt.Sprintf("bench-%03d", i)
			if err := env.Store.Demo().AddOrg(ctx, companionsync.Org{ID: id, Role: companionsync.RoleCompanion, Kind: companionsync.KindProduction, Active: true}); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Connect(ctx, control.Ref{Home: "bench", Companion: id}, contract.Settings{}); err != nil {
				b.Fatal(err)
			}
		}
		elapsed := time.Since(start)
		runtime.GC()
		after := rssKiB(b)
		b.ReportMetric(float64(after)/1024, "MiB-rss")
		b.ReportMetric(float64(after-before)/n, "KiB-rss/connection")
		b.ReportMetric(float64(n)/elapsed.Seconds(), "connects/s")
	}
}

// rssKiB reads the test process's resident set size.
func rssKiB(b *testing.B) int {
	b.Helper()
	return procRSSKiB(b, os.Getpid())
}
