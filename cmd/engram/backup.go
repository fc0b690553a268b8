package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"engram/internal/backup"
)

// runBackup downloads a backup from a running server: engram backup
// [--server URL] -o FILE.
func runBackup(args []string, stdout, stderr io.Writer) error {
	f := newCommandFlags("engram backup", "",
		"Downloads a consistent backup of the server's store (GET /v1/admin/backup) into FILE:\n"+
			"a tar of a Pebble checkpoint taken while writes go on, holding every write acknowledged\n"+
			"before the backup began. It is written to FILE.tmp, checked (every entry against its\n"+
			"checksum), fsynced and renamed to FILE. The search index is not in it: the server\n"+
			"rebuilds it at its first start on the restored directory (engram restore).", stderr)
	out := f.String("o", "", "write the backup to this file (required)")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if *out == "" {
		return f.usageError("-o FILE is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	hc, err := httpClient(*f.ca)
	if err != nil {
		return err
	}
	m, size, err := downloadBackup(ctx, hc, strings.TrimRight(*f.server, "/"), *f.token, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d bytes, head_seq %d, %d store files (%v)\n",
		*out, size, m.HeadSeq, len(m.Files), time.Since(start).Round(time.Millisecond))
	return nil
}

// downloadBackup streams GET /v1/admin/backup into out.tmp, checks it,
// fsyncs it and renames it to out.
func downloadBackup(ctx context.Context, hc *http.Client, server, token, out string) (backup.Manifest, int64, error) {
	var m backup.Manifest
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/v1/admin/backup", nil)
	if err != nil {
		return m, 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return m, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, 0, responseError(resp)
	}
	tmp := out + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return m, 0, err
	}
	ok := false
	defer func() {
		if !ok {
			fh.Close()
			os.Remove(tmp)
		}
	}()
	size, err := io.Copy(fh, resp.Body)
	if err != nil {
		return m, size, fmt.Errorf("download interrupted after %d bytes: %w", size, err)
	}
	if err := fh.Sync(); err != nil {
		return m, size, err
	}
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return m, size, err
	}
	if m, err = backup.Check(fh, backup.Limits{}); err != nil {
		return m, size, err
	}
	if err := fh.Close(); err != nil {
		return m, size, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return m, size, err
	}
	ok = true
	if d, err := os.Open(filepath.Dir(out)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return m, size, err
		}
	}
	return m, size, nil
}

// responseError is the error of a non-200 answer: the contract's error
// message when the body has one.
func responseError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		return fmt.Errorf("%s: %d %s: %s", resp.Request.URL.Path, resp.StatusCode, e.Error.Code, e.Error.Message)
	}
	return fmt.Errorf("%s: %s", resp.Request.URL.Path, resp.Status)
}

// runRestore restores a backup into a new data directory: engram restore
// --data DIR [--force] FILE.
func runRestore(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("engram restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &streamFlags{FlagSet: fs, name: "engram restore"}
	data := fs.String("data", "", "restore into this data directory: new or empty (required)")
	force := fs.Bool("force", false, "replace the contents of a non-empty --data (never one a server has open)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: engram restore --data DIR [--force] FILE\n\n"+
			"Restores the backup FILE (engram backup, or GET /v1/admin/backup; - reads stdin) into\n"+
			"DIR, which must not exist or be empty unless --force. Only the regular files the\n"+
			"backup's manifest lists are extracted, each checked against its checksum, into a new\n"+
			"directory beside DIR that is fsynced and then renamed to DIR: an interrupted restore\n"+
			"leaves DIR as it was. The search index is rebuilt when a server first starts on DIR.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if *data == "" {
		return f.usageError("--data DIR is required")
	}
	var in io.Reader = os.Stdin
	if pos[0] != "-" {
		fh, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer fh.Close()
		in = fh
	}
	start := time.Now()
	m, err := backup.Restore(in, *data, backup.RestoreOptions{Force: *force})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s into %s: head_seq %d, %d store files, %d bytes, taken %s by engram %s (%v)\n"+
		"the search index is rebuilt when the server first starts on %s\n",
		pos[0], *data, m.HeadSeq, len(m.Files), m.Bytes(), m.Created.Format(time.RFC3339), m.Version,
		time.Since(start).Round(time.Millisecond), *data)
	return nil
}

// errProblems fails engram verify when it found damage (exit status 1).
var errProblems = errors.New("the store has problems")

// runVerify checks a stopped store offline: engram verify --data DIR.
func runVerify(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("engram verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &streamFlags{FlagSet: fs, name: "engram verify"}
	data := fs.String("data", "", "the data directory to check; no server may be running on it (required)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: engram verify --data DIR\n\n"+
			"Checks a stopped store offline: its layout version; that the head seq is the last log\n"+
			"record's; that the log's seqs are gapless from the oldest kept to the head; that every\n"+
			"log record decodes and every state record it refers to exists; that every topic-index\n"+
			"entry points to an event of its topic and every event is indexed under its topics;\n"+
			"that the unit index matches the units; and that stream group counts match their items.\n"+
			"It prints what it checked and every problem, and exits 1 when there is any.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if *data == "" {
		return f.usageError("--data DIR is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	r, err := backup.VerifyDir(ctx, *data, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "layout version %d\n", r.Layout)
	fmt.Fprintf(stdout, "log: %d records, seqs %d to %d (head_seq %d), %d refer to state records\n",
		r.LogRecords, r.OldestSeq, r.HeadSeq, r.HeadSeq, r.Refs)
	fmt.Fprintf(stdout, "topic index: %d entries\n", r.TopicEntries)
	fmt.Fprintf(stdout, "work units: %d, unit index: %d entries\n", r.Units, r.UnitIndex)
	fmt.Fprintf(stdout, "stream groups: %d, items: %d\n", r.StreamGroups, r.StreamItems)
	if r.OK() {
		fmt.Fprintf(stdout, "ok: no problems (%v)\n", time.Since(start).Round(time.Millisecond))
		return nil
	}
	for _, p := range r.Problems {
		fmt.Fprintf(stdout, "PROBLEM: %s\n", p)
	}
	if r.Omitted > 0 {
		fmt.Fprintf(stdout, "... and %d more problems\n", r.Omitted)
	}
	return fmt.Errorf("%w: %d found", errProblems, len(r.Problems)+r.Omitted)
}
