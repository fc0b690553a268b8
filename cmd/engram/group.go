package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"engram/client"
)

// subcommand is one subcommand of a command group (engram stream get, ...).
type subcommand struct {
	name, args, summary string
	run                 func(args []string, stdout, stderr io.Writer) error
}

// commandGroup is a CLI command made of subcommands: engram
// stream|queue|lock|cron. Each subcommand parses its own flags (see
// newSubFlags).
type commandGroup struct {
	name  string       // "stream"
	subs  []subcommand // in usage order
	notes string       // the usage text after the list of subcommands
}

// run dispatches args[0] to its subcommand.
func (g *commandGroup) run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		g.usage(stderr)
		return errUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		g.usage(stderr)
		return flag.ErrHelp
	}
	for _, s := range g.subs {
		if s.name == args[0] {
			return s.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "engram %s: unknown subcommand %q\n\n", g.name, args[0])
	g.usage(stderr)
	return errUsage
}

func (g *commandGroup) usage(w io.Writer) {
	width := 0
	for _, s := range g.subs {
		width = max(width, len(s.name))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: engram %s <subcommand> [flags] ARGS\n\nSubcommands:\n", g.name)
	for _, s := range g.subs {
		line := strings.TrimRight(fmt.Sprintf("  %-*s %s", width, s.name, s.args), " ")
		fmt.Fprintf(&b, "%s\n%s%s\n", line, strings.Repeat(" ", width+3), s.summary)
	}
	b.WriteString("\nEvery subcommand takes --server URL, --token TOKEN and --ca FILE (env ENGRAM_SERVER, ENGRAM_TOKEN,\nENGRAM_CA);\n")
	fmt.Fprintf(&b, "`engram %s <subcommand> -h` shows its flags. %s", g.name, g.notes)
	io.WriteString(w, b.String())
}

// newSubFlags is the flag set of one subcommand of group, with --server
// and --token.
func newSubFlags(group, sub, args, help string, stderr io.Writer) *streamFlags {
	return newCommandFlags("engram "+group+" "+sub, args, help, stderr)
}

// newCommandFlags is the flag set of the command name ("engram search"),
// with --server and --token; args and help are its usage.
func newCommandFlags(name, args, help string, stderr io.Writer) *streamFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &streamFlags{FlagSet: fs, name: name}
	f.server, f.token, f.ca = serverFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n\n%s\n\nFlags:\n", strings.TrimRight("Usage: "+name+" [flags] "+args, " "), help)
		fs.PrintDefaults()
	}
	return f
}

// call is the common body of a subcommand: parse args (min to max
// positional ones), then run fn with a client and a context that an
// interrupt cancels, and print its result as JSON (nothing for nil).
func (f *streamFlags) call(args []string, min, max int, stdout io.Writer, fn func(ctx context.Context, c *client.Client, pos []string) (any, error)) error {
	pos, err := f.parse(args, min, max)
	if err != nil {
		return err
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	out, err := fn(ctx, c, pos)
	if err != nil || out == nil {
		return err
	}
	return printJSON(stdout, out)
}
