package api

import (
	"bufio"
	"fmt"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"

	"engram/internal/backup"
)

// BackupSource takes the snapshots GET /v1/admin/backup streams
// (*backup.Source).
type BackupSource interface {
	Take() (*backup.Snapshot, error)
}

var _ BackupSource = (*backup.Source)(nil)

// backup streams a consistent snapshot of the store as a tar while writes
// go on. The snapshot is removed when the stream ends, whether the client
// read it all or went away.
func (h *handlers) backup(c *fiber.Ctx) error {
	if c.Method() == fiber.MethodHead { // no snapshot for a body nobody reads
		c.Set(fiber.HeaderContentType, "application/x-tar")
		return c.SendStatus(fiber.StatusOK)
	}
	snap, err := h.cfg.Backup.Take()
	if err != nil {
		return err
	}
	m := snap.Manifest()
	h.audit(c, "backup", "head_seq", m.HeadSeq)
	c.Status(fiber.StatusOK)
	c.Set(fiber.HeaderContentType, "application/x-tar")
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="engram-backup-%d.tar"`, m.HeadSeq))
	// A backup may take longer than the write timeout: the deadline moves
	// on with each write instead, so only a client that stops reading is
	// cut off.
	dw := &deadlineWriter{conn: c.Context().Conn(), timeout: h.cfg.WriteTimeout}
	log := h.log
	start := time.Now()
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer snap.Close()
		dw.w = w
		n, err := snap.WriteTo(dw)
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			log.Warn("backup not completed", "head_seq", m.HeadSeq, "bytes", n, "err", err)
			return
		}
		log.Info("backup streamed", "head_seq", m.HeadSeq, "files", len(m.Files), "bytes", n,
			"took", time.Since(start).Round(time.Millisecond))
	})
	return nil
}

// deadlineWriter extends the connection's write deadline before each
// write.
type deadlineWriter struct {
	w       *bufio.Writer
	conn    net.Conn
	timeout time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if d.conn != nil && d.timeout > 0 {
		_ = d.conn.SetWriteDeadline(time.Now().Add(d.timeout))
	}
	return d.w.Write(p)
}
