// Command engram is the Engram CLI: the load generator (bench), tail,
// health, stream, queue, lock, cron, search, reindex, backup, restore,
// verify and keygen.
//
// Each subcommand is one entry in the commands map below; it gets its own
// arguments (after the subcommand name) and parses them with its own
// flag.FlagSet.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one subcommand of the CLI.
type command struct {
	// summary is the one-line description shown by `engram help`.
	summary string
	// run executes the subcommand with the arguments that follow its name.
	// It writes its normal output to stdout and returns an error to fail.
	run func(args []string, stdout, stderr io.Writer) error
}

// commands maps a subcommand name to its implementation. Adding a
// subcommand is one entry here.
var commands = map[string]command{
	"bench":   {summary: "measure write/read throughput and latency against the same-run machine ceilings", run: runBench},
	"tail":    {summary: "print a topic's events as JSON lines, live, resuming after a dropped connection", run: runTail},
	"health":  {summary: "exit 0 when the server is ready (for container health checks)", run: runHealth},
	"stream":  {summary: "get, set, update, delete and list stream items (engram stream -h)", run: runStream},
	"queue":   {summary: "publish, lease, ack and nack queue messages; stats, dead letters (engram queue -h)", run: runQueue},
	"lock":    {summary: "acquire, renew, release, get and list locks (engram lock -h)", run: runLock},
	"cron":    {summary: "create, get, delete and list cron jobs that publish on a queue (engram cron -h)", run: runCron},
	"search":  {summary: "full-text search over work units and stream items (engram search -h)", run: runSearch},
	"reindex": {summary: "rebuild the search index, through the server or offline (--data DIR), and follow it", run: runReindex},
	"backup":  {summary: "download a consistent backup of a running server's store (-o FILE)", run: runBackup},
	"restore": {summary: "restore a backup into a new data directory (--data DIR FILE)", run: runRestore},
	"verify":  {summary: "check a stopped store's layout and log offline (--data DIR)", run: runVerify},
	"keygen":  {summary: "print a new API key, its SHA-256 and the config snippet that admits it", run: runKeygen},
}

// errUsage marks an error already explained to the user (bad flags, -h):
// main exits with status 2 without printing it again.
var errUsage = errors.New("usage")

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the subcommand named by args[0] and returns the exit code.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 {
			if c, ok := commands[rest[0]]; ok {
				// Let the subcommand's flag set print its own usage.
				if err := c.run([]string{"-h"}, stdout, stdout); err != nil && !errors.Is(err, errUsage) && !errors.Is(err, flag.ErrHelp) {
					fmt.Fprintln(stderr, "engram:", err)
					return 1
				}
				return 0
			}
			fmt.Fprintf(stderr, "engram: unknown command %q\n\n", rest[0])
			usage(stderr)
			return 2
		}
		usage(stdout)
		return 0
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "engram: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	if err := c.run(rest, stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if errors.Is(err, errUsage) {
			return 2
		}
		fmt.Fprintf(stderr, "engram %s: %v\n", name, err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("Usage: engram <command> [flags]\n\nCommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(&b, "  %-10s %s\n", "help", "show this help, or `engram help <command>` for a command's flags")
	io.WriteString(w, b.String())
}
