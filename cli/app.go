// Package cli builds the ganeti-node command line. Every command except
// `daemon` and `ssh-update` is a thin client of the local daemon's Unix
// socket; cluster-changing commands are decided by the daemon (run on
// the master, forwarded by a candidate, refused on a normal node).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"ganeti-node/daemon"
	"ganeti-node/rpcsec"
	"ganeti-node/sshdist"
)

// NewApp returns the ganeti-node application. Usage errors (unknown
// commands and flags) are returned as errors, without the help text,
// so main prints them on one line.
func NewApp() *cli.App {
	app := &cli.App{
		Name:  "ganeti-node",
		Usage: "keep a Ganeti-style cluster's node control limited to master candidates",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Value: "/", EnvVars: []string{"GANETI_ROOT"},
				Usage: "root prefix of every file this node uses"},
			&cli.BoolFlag{Name: "verbose", Usage: "log debug events too"},
		},
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			daemonCmd(), initCmd(), authorizedKeysCmd(), joinCmd(),
			nodeCmd(daemon.OpPromote, "make a node a master candidate", false),
			nodeCmd(daemon.OpDemote, "make a master candidate a regular node", true),
			nodeCmd(daemon.OpOffline, "mark a node offline and revoke its powers", true),
			nodeCmd(daemon.OpOnline, "bring an offline node back", false),
			nodeCmd(daemon.OpRemove, "remove a node from the cluster", false),
			nodeCmd(daemon.OpDrain, "mark a node drained (no new instances; not a candidate)", true),
			nodeCmd(daemon.OpUndrain, "clear a node's drained flag", false),
			modifyCmd(), listCmd(), statusCmd(), clusterCmd(), sshUpdateCmd(),
		},
	}
	quietUsage(app.Commands)
	app.OnUsageError = usageError
	return app
}

// Run runs the application and turns an unknown command into an error.
func Run(app *cli.App, args []string) error {
	var unknown string
	app.CommandNotFound = func(_ *cli.Context, name string) { unknown = name }
	if err := app.Run(args); err != nil {
		return err
	}
	if unknown != "" {
		return fmt.Errorf("unknown command %q; see `ganeti-node --help`", unknown)
	}
	return nil
}

func usageError(c *cli.Context, err error, _ bool) error {
	return fmt.Errorf("%w; see `%s --help`", err, c.Command.HelpName)
}

func quietUsage(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = usageError
		quietUsage(c.Subcommands)
	}
}

var outputFlag = &cli.StringFlag{Name: "output", Value: "text", Usage: "text or json"}

func root(c *cli.Context) string { return c.String("root") }

func local(c *cli.Context) *client { return newClient(root(c), 10*time.Minute) }

func checkOutput(c *cli.Context) error {
	switch c.String("output") {
	case "text", "json":
		return nil
	}
	return fmt.Errorf("unknown --output %q: use text or json", c.String("output"))
}

// oneArg returns the single positional argument or a usage error.
func oneArg(c *cli.Context, what string) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%s needs exactly one %s argument (got %d)",
			c.Command.Name, what, c.NArg())
	}
	return c.Args().First(), nil
}

func printResult(w io.Writer, res *daemon.OpResult) {
	fmt.Fprintln(w, res.Message)
	if res.Summary != "" {
		fmt.Fprintln(w, res.Summary)
	}
	for _, n := range res.Unreachable {
		fmt.Fprintf(w, "unreachable: %s (the master keeps retrying)\n", n)
	}
}

func daemonCmd() *cli.Command {
	return &cli.Command{Name: "daemon", Usage: "run the node daemon in the foreground",
		Action: func(c *cli.Context) error {
			level := slog.LevelInfo
			if c.Bool("verbose") {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			slog.SetDefault(log)
			cfg := daemon.DefaultConfig(root(c))
			cfg.Log = log
			if v := os.Getenv("GANETI_RAFT_SNAPSHOT_THRESHOLD"); v != "" {
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return fmt.Errorf("GANETI_RAFT_SNAPSHOT_THRESHOLD=%q is not a number", v)
				}
				cfg.Raft.SnapshotThreshold = n
				cfg.Raft.SnapshotInterval = time.Second
				cfg.Raft.TrailingLogs = n
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			return daemon.New(cfg).Run(ctx)
		}}
}

func sshUpdateCmd() *cli.Command {
	return &cli.Command{Name: "ssh-update", Usage: "remote helper run by the master over SSH",
		Hidden: false,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "serve",
			Usage: "answer one JSON request per line until stdin ends " +
				"(the master's pooled connections use this)"}},
		Action: func(c *cli.Context) error {
			cl := newClient(root(c), time.Minute)
			env := sshdist.Env{Root: root(c), Now: time.Now, NewCSR: rpcsec.NewKeyAndCSR,
				Activate: func() error {
					return cl.call(http.MethodPost, "/v1/activate", struct{}{}, nil)
				}}
			serve := sshdist.ServeUpdate
			if c.Bool("serve") {
				serve = func(env sshdist.Env, in io.Reader, out io.Writer) error {
					return sshdist.ServeUpdates(env, in, out, 0)
				}
			}
			if err := serve(env, os.Stdin, os.Stdout); err != nil {
				return errSilent{err}
			}
			return nil
		}}
}

// errSilent is an error already reported on stdout (ssh-update answers
// in JSON); main exits non-zero without printing it again.
type errSilent struct{ error }

// Silent reports whether err was already shown to the user.
func Silent(err error) bool {
	var s errSilent
	return errors.As(err, &s)
}
