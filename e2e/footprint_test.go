package e2e

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
	"github.com/companionsync/companionsync/workflows"
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
		if err := env.Store.AddOrg(ctx, companionsync.Org{ID: "bench", Role: companionsync.RoleHome, Kind: companionsync.KindProduction,
			LicenceExpiresAt: time.Now().AddDate(1, 0, 0), MaxCompanions: n}); err != nil {
			b.Fatal(err)
		}
		c := control.New(env.Client)
		start := time.Now()
		for i := range n {
			id := fmt.Sprintf("bench-%03d", i)
			if err := env.Store.AddOrg(ctx, companionsync.Org{ID: id, Role: companionsync.RoleCompanion, Kind: companionsync.KindProduction, Active: true}); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Connect(ctx, control.Ref{Home: "bench", Companion: id}, workflows.Settings{}); err != nil {
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

// rssKiB reads the process's resident set size from /proc.
func rssKiB(b *testing.B) int {
	b.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			return n
		}
	}
	b.Skip("no VmRSS")
	return 0
}
