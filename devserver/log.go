package devserver

import (
	"context"
	"log/slog"

	serverlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
)

// levelHandler drops records below a level that can be raised at run time:
// Stop silences the server, whose services log errors while shutting down.
type levelHandler struct {
	min   *slog.LevelVar
	inner slog.Handler
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min.Level() && h.inner.Enabled(ctx, l)
}

func (h levelHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.inner.Handle(ctx, r)
}

func (h levelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return levelHandler{min: h.min, inner: h.inner.WithAttrs(attrs)}
}

func (h levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{min: h.min, inner: h.inner.WithGroup(name)}
}

// serverLogger adapts a *slog.Logger to the Temporal server's logger interface.
//
// DPanic is logged as an error. Fatal and Panic log, then panic: the server
// code after them assumes they do not return (a failed listener is used
// anyway), so returning would only crash later with a less useful message.
type serverLogger struct {
	log *slog.Logger
}

var (
	_ serverlog.Logger      = serverLogger{}
	_ serverlog.WithLogger  = serverLogger{}
	_ serverlog.SLogWrapper = serverLogger{}
)

func (l serverLogger) Debug(msg string, tags ...tag.Tag) { l.emit(slog.LevelDebug, msg, tags) }
func (l serverLogger) Info(msg string, tags ...tag.Tag)  { l.emit(slog.LevelInfo, msg, tags) }
func (l serverLogger) Warn(msg string, tags ...tag.Tag)  { l.emit(slog.LevelWarn, msg, tags) }
func (l serverLogger) Error(msg string, tags ...tag.Tag) { l.emit(slog.LevelError, msg, tags) }
func (l serverLogger) DPanic(msg string, tags ...tag.Tag) {
	l.emit(slog.LevelError, msg, tags)
}
func (l serverLogger) Fatal(msg string, tags ...tag.Tag) {
	l.emit(slog.LevelError, msg, append(tags, tag.NewBoolTag("fatal", true)))
	panic("temporal server: " + msg)
}
func (l serverLogger) Panic(msg string, tags ...tag.Tag) {
	l.emit(slog.LevelError, msg, tags)
	panic("temporal server: " + msg)
}

// With returns a logger that prepends tags to every record.
func (l serverLogger) With(tags ...tag.Tag) serverlog.Logger {
	return serverLogger{log: slog.New(l.log.Handler().WithAttrs(attrs(tags)))}
}

// SLog lets server code that wants a *slog.Logger use the same destination.
func (l serverLogger) SLog() *slog.Logger { return l.log }

func (l serverLogger) emit(level slog.Level, msg string, tags []tag.Tag) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.LogAttrs(ctx, level, msg, attrs(tags)...)
}

func attrs(tags []tag.Tag) []slog.Attr {
	out := make([]slog.Attr, len(tags))
	for i, t := range tags {
		out[i] = slog.Any(t.Key(), t.Value())
	}
	return out
}
