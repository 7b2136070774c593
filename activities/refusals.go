package activities

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/companionsync/companionsync/contract"
)

// RefusalWriter writes to the audit trail the updates a connection's
// validator refused. A refused update never reaches the workflow's history,
// so the worker that refused it records it; record is called on the
// workflow's goroutine and must not block, so entries go through a bounded
// queue to a goroutine of their own. Entries still queued when the worker
// stops, or beyond the queue, are logged instead (the caller was answered
// with the refusal either way).
type RefusalWriter struct {
	log    AuditLog
	logger *slog.Logger
	queue  chan contract.AuditEntry
	done   sync.WaitGroup
}

const refusalQueue = 1000

// NewRefusalWriter starts a writer to log; Close stops it.
func NewRefusalWriter(log AuditLog, logger *slog.Logger) *RefusalWriter {
	w := &RefusalWriter{log: log, logger: logger, queue: make(chan contract.AuditEntry, refusalQueue)}
	w.done.Add(1)
	go w.run()
	return w
}

// Record queues e; it never blocks.
func (w *RefusalWriter) Record(e contract.AuditEntry) {
	select {
	case w.queue <- e:
	default:
		w.logger.Warn("refused request not written to the audit trail: queue full", "connection", e.Connection,
			"request", e.Request, "actor", e.Actor, "reason", e.Reason)
	}
}

func (w *RefusalWriter) run() {
	defer w.done.Done()
	for e := range w.queue {
		batch := []contract.AuditEntry{e}
	more:
		for len(batch) < 100 {
			select {
			case next, ok := <-w.queue:
				if !ok {
					break more
				}
				batch = append(batch, next)
			default:
				break more
			}
		}
		w.write(batch)
	}
}

func (w *RefusalWriter) write(batch []contract.AuditEntry) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.log.RecordAudit(ctx, batch); err != nil {
		for _, e := range batch {
			w.logger.Warn("refused request not written to the audit trail", "connection", e.Connection,
				"request", e.Request, "actor", e.Actor, "reason", e.Reason, "error", err)
		}
	}
}

// Close writes what is queued and stops; Record must not be called after.
func (w *RefusalWriter) Close() {
	close(w.queue)
	w.done.Wait()
}
