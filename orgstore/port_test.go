package orgstore

import (
	"reflect"
	"testing"

	"github.com/companionsync/companionsync"
)

// TestStoreHoldsThePortOnly: Store's exported methods are the
// companionsync.Orgs port and the handful production code needs to open,
// close and inspect it; demo and test helpers belong to Demo. A helper
// added to Store fails here.
func TestStoreHoldsThePortOnly(t *testing.T) {
	allowed := map[string]bool{"Close": true, "String": true, "SchemaVersion": true, "Demo": true}
	// The operations side: the audit trail and the notices sent
	// (activities.AuditLog and NoticeLog), and the fleet gauges' lease and
	// licence counts (the worker's /metrics).
	for _, name := range []string{"RecordAudit", "Audit", "NoticeSent", "MarkNoticeSent", "OpenIncidents", "OpenIncident",
		"CloseIncident", "TryLease", "ReleaseLease", "LicenceCounts",
		// The fleet watcher's table (activities.Watches).
		"Watch", "Told", "WatchMetadata", "SwapMetadataWaiting", "Unwatch", "Watched"} {
		allowed[name] = true
	}
	port := reflect.TypeFor[companionsync.Orgs]()
	for i := range port.NumMethod() {
		allowed[port.Method(i).Name] = true
	}
	store := reflect.TypeFor[*Store]()
	for i := range store.NumMethod() {
		if name := store.Method(i).Name; !allowed[name] {
			t.Errorf("Store.%s is neither the port nor production plumbing: move it to Demo", name)
		}
	}
	if store.NumMethod() != len(allowed) {
		t.Errorf("Store has %d exported methods; want the %d of the port and plumbing", store.NumMethod(), len(allowed))
	}
	// Every demo helper is on Demo.
	demo := reflect.TypeFor[*Demo]()
	for _, name := range []string{"Seed", "ExpireLicence", "InjectCopyFailures", "TakeInjectedFailure", "RecordChecksum", "ErrorLog"} {
		if _, ok := demo.MethodByName(name); !ok {
			t.Errorf("Demo has no %s", name)
		}
	}
}
