package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"engram/client"
)

// stdin is where `engram stream set|update ... -` reads; tests replace it.
var stdin io.Reader = os.Stdin

// streamCommand is `engram stream` and its subcommands, in usage order.
var streamCommand = commandGroup{name: "stream", notes: "Values are JSON and printed as compact\n" +
	"JSON, one per line. Exit status: 0 ok, 1 error (the server's message on stderr), 2 usage.\n", subs: []subcommand{
	{"get", "STREAM/GROUP/ITEM", "print an item's value", runStreamGet},
	{"set", "STREAM/GROUP/ITEM VALUE|-", "set an item's value (JSON; - reads it from stdin)", runStreamSet},
	{"update", "STREAM/GROUP/ITEM [OPS|-] [--inc K[=N]] [--set K=JSON] ...", "apply update ops as one change", runStreamUpdate},
	{"delete", "STREAM/GROUP/ITEM", "delete an item, printing its last value", runStreamDelete},
	{"ls", "[STREAM[/GROUP]]", "list streams and their groups, a stream's groups, or a group's items", runStreamLs},
}}

// runStream reads and changes stream items: engram stream
// get|set|update|delete|ls.
func runStream(args []string, stdout, stderr io.Writer) error {
	return streamCommand.run(args, stdout, stderr)
}

// streamFlags is the flag set of one stream subcommand, with --server and
// --token.
type streamFlags struct {
	*flag.FlagSet
	name              string // "engram stream get"
	server, token, ca *string
}

// parse parses the flags wherever they stand among args ("--" ends them)
// and checks the number of the other arguments, which it returns.
func (f *streamFlags) parse(args []string, minArgs, maxArgs int) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage // the flag package has explained it
		}
		rest := f.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < minArgs || len(pos) > maxArgs {
		want := fmt.Sprintf("%d to %d arguments", minArgs, maxArgs)
		switch {
		case minArgs == maxArgs && minArgs == 1:
			want = "1 argument"
		case minArgs == maxArgs:
			want = fmt.Sprintf("%d arguments", minArgs)
		}
		return nil, f.usageError("want %s, got %d", want, len(pos))
	}
	return pos, nil
}

// usageError prints a usage problem and the subcommand's usage, and returns
// errUsage (exit status 2).
func (f *streamFlags) usageError(format string, a ...any) error {
	fmt.Fprintf(f.Output(), "%s: %s\n\n", f.name, fmt.Sprintf(format, a...))
	f.Usage()
	return errUsage
}

// client returns a client of --server and a context that ends on SIGINT or
// SIGTERM.
func (f *streamFlags) client() (*client.Client, context.Context, context.CancelFunc, error) {
	c, err := newClient(*f.server, *f.token, *f.ca)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	return c, ctx, stop, nil
}

// itemRef parses STREAM/GROUP/ITEM.
func (f *streamFlags) itemRef(s string) (stream, group, item string, err error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 || slices.Contains(parts, "") {
		return "", "", "", f.usageError("want STREAM/GROUP/ITEM, got %q", s)
	}
	return parts[0], parts[1], parts[2], nil
}

// readArg returns arg, or all of stdin when arg is "-".
func readArg(arg string) ([]byte, error) {
	if arg != "-" {
		return []byte(arg), nil
	}
	b, err := io.ReadAll(stdin)
	if err != nil {
		return nil, fmt.Errorf("read stdin: %w", err)
	}
	return b, nil
}

// printJSON writes v as compact JSON and a newline.
func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func runStreamGet(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("stream", "get", "STREAM/GROUP/ITEM",
		"Prints the item's value as compact JSON. A missing item is an error (exit status 1).", stderr)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	s, g, i, err := f.itemRef(pos[0])
	if err != nil {
		return err
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	v, err := c.GetItem(ctx, s, g, i)
	if err != nil {
		return err
	}
	return printJSON(stdout, v)
}

func runStreamSet(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("stream", "set", "STREAM/GROUP/ITEM VALUE|-",
		"Sets the item's value to VALUE, any JSON (quote a string: '\"text\"'); - reads the value\n"+
			"from stdin. Put -- before a VALUE that starts with - (a negative number). Prints the\n"+
			`change: {"old_value":..,"new_value":..} (old_value is null for a new item).`, stderr)
	pos, err := f.parse(args, 2, 2)
	if err != nil {
		return err
	}
	s, g, i, err := f.itemRef(pos[0])
	if err != nil {
		return err
	}
	value, err := readArg(pos[1])
	if err != nil {
		return err
	}
	if !json.Valid(value) {
		return f.usageError("VALUE is not valid JSON (quote a string: '\"text\"')")
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	ch, err := c.SetItem(ctx, s, g, i, json.RawMessage(value))
	if err != nil {
		return err
	}
	return printJSON(stdout, ch)
}

// opsFlag collects the ops of update's convenience flags, in command-line
// order.
type opsFlag struct {
	ops []client.StreamOp
}

// keyValue splits K=V; without "=" ok is false.
func keyValue(s string) (k, v string, ok bool) {
	return strings.Cut(s, "=")
}

// jsonNumber checks that s is one JSON number.
func jsonNumber(s string) (json.Number, error) {
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) || !json.Valid([]byte(s)) {
		return "", fmt.Errorf("%q is not a number", s)
	}
	return json.Number(s), nil
}

func (o *opsFlag) add(fs *flag.FlagSet) {
	counter := func(typ string) func(string) error {
		return func(s string) error {
			k, n, ok := keyValue(s)
			if !ok {
				n = "1"
			}
			by, err := jsonNumber(n)
			if err != nil {
				return err
			}
			o.ops = append(o.ops, client.StreamOp{Type: typ, Path: k, By: by})
			return nil
		}
	}
	fs.Func("inc", "add N (default 1) to field K (`K[=N]`, repeatable)", counter("increment"))
	fs.Func("dec", "subtract N (default 1) from field K (`K[=N]`, repeatable)", counter("decrement"))
	fs.Func("set", "set field K to the JSON value (`K=JSON`, repeatable)", func(s string) error {
		k, v, ok := keyValue(s)
		if !ok {
			return errors.New("want K=JSON")
		}
		if !json.Valid([]byte(v)) {
			return fmt.Errorf("%q is not valid JSON (quote a string: K='\"text\"')", v)
		}
		o.ops = append(o.ops, client.OpSet(k, json.RawMessage(v)))
		return nil
	})
	fs.Func("append", "append the JSON value to the array (or string) in field K (`K=JSON`, repeatable)", func(s string) error {
		k, v, ok := keyValue(s)
		if !ok {
			return errors.New("want K=JSON")
		}
		if !json.Valid([]byte(v)) {
			return fmt.Errorf("%q is not valid JSON (quote a string: K='\"text\"')", v)
		}
		o.ops = append(o.ops, client.OpAppend([]string{k}, json.RawMessage(v)))
		return nil
	})
	fs.Func("remove", "remove field `K` (repeatable)", func(s string) error {
		o.ops = append(o.ops, client.OpRemove(s))
		return nil
	})
	fs.Func("merge", "merge a JSON `object` into the item (repeatable)", func(s string) error {
		if !json.Valid([]byte(s)) {
			return fmt.Errorf("%q is not valid JSON", s)
		}
		o.ops = append(o.ops, client.OpMerge(nil, json.RawMessage(s)))
		return nil
	})
}

// wireOp is an op as written in OPS: kept as JSON, so that numbers pass
// through exactly.
type wireOp struct {
	Type  string          `json:"type"`
	Path  json.RawMessage `json:"path"`
	Value json.RawMessage `json:"value"`
	By    json.Number     `json:"by"`
}

// parseOps parses OPS, a JSON array of ops.
func parseOps(b []byte) ([]client.StreamOp, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	d.UseNumber()
	var in []wireOp
	if err := d.Decode(&in); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("more than one JSON value")
	}
	if in == nil {
		return nil, errors.New(`want a JSON array of ops, like [{"type":"increment","path":"n","by":1}]`)
	}
	ops := make([]client.StreamOp, len(in))
	for i, w := range in {
		ops[i] = client.StreamOp{Type: w.Type, By: w.By}
		if len(w.Path) > 0 {
			ops[i].Path = w.Path
		}
		if len(w.Value) > 0 {
			ops[i].Value = w.Value
		}
	}
	return ops, nil
}

func runStreamUpdate(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("stream", "update", "STREAM/GROUP/ITEM [OPS|-]",
		"Applies update ops to the item, in order, as one change (an absent item starts as {}).\n"+
			`OPS is a JSON array of ops, e.g. '[{"type":"increment","path":"n","by":1}]' (types: set,`+"\n"+
			"increment, decrement, remove, merge, append); - reads it from stdin. The flags add ops\n"+
			"after those of OPS, in their order. Prints the change: {\"old_value\":..,\"new_value\":..,\n"+
			"\"errors\"?:[..]}. An op that cannot apply is skipped while the others apply; then the\n"+
			"exit status is 1.", stderr)
	var flagOps opsFlag
	flagOps.add(f.FlagSet)
	pos, err := f.parse(args, 1, 2)
	if err != nil {
		return err
	}
	s, g, i, err := f.itemRef(pos[0])
	if err != nil {
		return err
	}
	var ops []client.StreamOp
	if len(pos) == 2 {
		b, err := readArg(pos[1])
		if err != nil {
			return err
		}
		if ops, err = parseOps(b); err != nil {
			return f.usageError("OPS: %v", err)
		}
	}
	ops = append(ops, flagOps.ops...)
	if len(ops) == 0 {
		return f.usageError("no ops: give OPS or a flag (--inc, --set, ...)")
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	ch, err := c.UpdateItem(ctx, s, g, i, ops...)
	if err != nil {
		return err
	}
	if err := printJSON(stdout, ch); err != nil {
		return err
	}
	if len(ch.Errors) > 0 {
		msgs := make([]string, len(ch.Errors))
		for j, e := range ch.Errors {
			msgs[j] = fmt.Sprintf("op %d: %s: %s", e.OpIndex, e.Code, e.Message)
		}
		return fmt.Errorf("%d of %d ops skipped (the others were applied): %s", len(ch.Errors), len(ops), strings.Join(msgs, "; "))
	}
	return nil
}

func runStreamDelete(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("stream", "delete", "STREAM/GROUP/ITEM",
		"Deletes the item and prints its last value. A missing item is an error (exit status 1).", stderr)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	s, g, i, err := f.itemRef(pos[0])
	if err != nil {
		return err
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	old, err := c.DeleteItem(ctx, s, g, i)
	if err != nil {
		return err
	}
	return printJSON(stdout, old)
}

func runStreamLs(args []string, stdout, stderr io.Writer) error {
	f := newSubFlags("stream", "ls", "[STREAM[/GROUP]]",
		"Without an argument, prints every stream's groups as STREAM/GROUP lines; with STREAM, the\n"+
			"stream's groups, one a line; with STREAM/GROUP, the group's items as ID<TAB>VALUE lines\n"+
			"(VALUE as compact JSON), by id, following every page.", stderr)
	pageSize := f.Int("page-size", 0, "items per request when listing a group, 1 to 1000 (0: the server's default)")
	pos, err := f.parse(args, 0, 1)
	if err != nil {
		return err
	}
	if *pageSize < 0 || *pageSize > 1000 {
		return f.usageError("--page-size must be 0 to 1000")
	}
	var parts []string
	if len(pos) == 1 {
		parts = strings.Split(strings.TrimSuffix(pos[0], "/"), "/")
		if len(parts) > 2 || slices.Contains(parts, "") {
			return f.usageError("want STREAM or STREAM/GROUP, got %q", pos[0])
		}
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	switch len(parts) {
	case 0:
		streams, err := c.ListStreams(ctx)
		if err != nil {
			return err
		}
		for _, s := range streams {
			for _, g := range s.Groups {
				fmt.Fprintf(w, "%s/%s\n", s.ID, g)
			}
		}
	case 1:
		groups, err := c.ListGroups(ctx, parts[0])
		if err != nil {
			return err
		}
		for _, g := range groups {
			fmt.Fprintln(w, g)
		}
	case 2:
		for it, err := range c.AllItems(ctx, parts[0], parts[1], client.ListOptions{Limit: *pageSize}) {
			if err != nil {
				return err
			}
			w.WriteString(it.ID)
			w.WriteByte('\t')
			w.Write(it.Value)
			w.WriteByte('\n')
		}
	}
	return w.Flush()
}
