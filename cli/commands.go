package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"ganeti-node/daemon"
)

func initCmd() *cli.Command {
	return &cli.Command{Name: "init", Usage: "create a new cluster with this node as master",
		ArgsUsage: "CLUSTER",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "node-name", Usage: "this node's name (default: host name)"},
			&cli.StringFlag{Name: "primary-ip", Usage: "this node's primary IP"},
			&cli.IntFlag{Name: "ssh-port", Value: daemon.DefaultSSHPort},
			&cli.IntFlag{Name: "rpc-port", Value: daemon.DefaultRPCPort},
			&cli.IntFlag{Name: "gossip-port", Value: daemon.DefaultGossipPort},
			&cli.IntFlag{Name: "candidate-pool-size", Value: daemon.DefaultPoolSize},
			&cli.BoolFlag{Name: "no-ssh-init", Usage: "never touch any SSH key file"},
			&cli.BoolFlag{Name: "master-capability-rapi-modifiable"},
			&cli.StringFlag{Name: "ssh-key-type", Value: daemon.DefaultKeyType},
			&cli.StringFlag{Name: "authorized-keys-file", Value: "/root/.ssh/authorized_keys",
				Usage: "the file sshd reads on every node (under the root prefix)"},
		},
		Action: func(c *cli.Context) error {
			name, err := oneArg(c, "CLUSTER")
			if err != nil {
				return err
			}
			node := c.String("node-name")
			if node == "" {
				node, _ = os.Hostname()
			}
			a := daemon.InitArgs{Cluster: name, NodeName: node,
				PrimaryIP: c.String("primary-ip"), SSHPort: c.Int("ssh-port"),
				RPCPort: c.Int("rpc-port"), GossipPort: c.Int("gossip-port"),
				CandidatePoolSize: c.Int("candidate-pool-size"), NoSSHInit: c.Bool("no-ssh-init"),
				MasterCapabilityRapiModifiable: c.Bool("master-capability-rapi-modifiable"),
				SSHKeyType:                     c.String("ssh-key-type"), AuthorizedKeysFile: c.String("authorized-keys-file")}
			var res daemon.OpResult
			if err := local(c).call(http.MethodPost, "/v1/init", a, &res); err != nil {
				return err
			}
			printResult(c.App.Writer, &res)
			return nil
		}}
}

func authorizedKeysCmd() *cli.Command {
	return &cli.Command{Name: "authorized-keys",
		Usage: "print the lines a new host must trust before it is joined",
		Action: func(c *cli.Context) error {
			var raw []byte
			if err := local(c).call(http.MethodGet, "/v1/authorized-keys", nil, &raw); err != nil {
				return err
			}
			_, err := c.App.Writer.Write(raw)
			return err
		}}
}

func joinCmd() *cli.Command {
	return &cli.Command{Name: "join", Usage: "add a host to the cluster (run on the master)",
		ArgsUsage: "NODE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "primary-ip", Usage: "the host's primary IP (required)"},
			&cli.IntFlag{Name: "ssh-port", Value: daemon.DefaultSSHPort},
			&cli.BoolFlag{Name: "readd", Usage: "re-install a node that is already a member"},
			&cli.BoolFlag{Name: "master-capable", Value: true},
			&cli.BoolFlag{Name: "no-node-setup", Usage: "touch no SSH file on the host"},
		},
		Action: func(c *cli.Context) error {
			name, err := oneArg(c, "NODE")
			if err != nil {
				return err
			}
			if c.String("primary-ip") == "" {
				return fmt.Errorf("join needs --primary-ip for %s", name)
			}
			a := daemon.JoinArgs{Name: name, PrimaryIP: c.String("primary-ip"),
				SSHPort: c.Int("ssh-port"), Readd: c.Bool("readd"),
				NoNodeSetup: c.Bool("no-node-setup")}
			if c.IsSet("master-capable") {
				v := c.Bool("master-capable")
				a.MasterCapable = &v
			}
			return runOp(c, daemon.OpJoin, a)
		}}
}

// runOp runs a cluster operation. On a terminal it shows each node's
// progress on one rewritten stderr line; the result and the SSH
// summary are always printed.
func runOp(c *cli.Context, op string, args any) error {
	var res *daemon.OpResult
	var err error
	if isTerminal(os.Stderr) {
		res, err = local(c).opStream(op, args, func(p string) {
			fmt.Fprintf(os.Stderr, "\r\033[K%s", p)
		})
		fmt.Fprint(os.Stderr, "\r\033[K")
	} else {
		res, err = local(c).op(op, args)
	}
	if err != nil {
		return err
	}
	printResult(c.App.Writer, res)
	return nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func nodeCmd(op, usage string, autoPromote bool) *cli.Command {
	cmd := &cli.Command{Name: op, Usage: usage, ArgsUsage: "NODE",
		Action: func(c *cli.Context) error {
			name, err := oneArg(c, "NODE")
			if err != nil {
				return err
			}
			return runOp(c, op, daemon.NodeArgs{Node: name, AutoPromote: c.Bool("auto-promote")})
		}}
	if autoPromote {
		cmd.Flags = []cli.Flag{&cli.BoolFlag{Name: "auto-promote",
			Usage: "promote another node if the candidate pool would fall short"}}
	}
	return cmd
}

func modifyCmd() *cli.Command {
	return &cli.Command{Name: "modify", Usage: "change a node's flags",
		ArgsUsage: "NODE --master-capable=BOOL",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "master-capable",
			Usage: "true or false", DefaultText: "unchanged"}},
		Action: func(c *cli.Context) error {
			name, v, err := modifyArgs(c)
			if err != nil {
				return err
			}
			return runOp(c, daemon.OpModify, daemon.NodeArgs{Node: name, MasterCapable: v})
		}}
}

// modifyArgs reads `modify [--master-capable=BOOL] NODE` and DESIGN's
// `modify NODE --master-capable=BOOL` alike: urfave/cli stops reading
// flags at the first argument, so a trailing flag is parsed here.
func modifyArgs(c *cli.Context) (string, *bool, error) {
	args := c.Args().Slice()
	if len(args) == 2 && strings.HasPrefix(args[1], "--master-capable=") {
		v, err := strconv.ParseBool(strings.TrimPrefix(args[1], "--master-capable="))
		if err != nil {
			return "", nil, fmt.Errorf("--master-capable needs true or false, got %q", args[1])
		}
		return args[0], &v, nil
	}
	name, err := oneArg(c, "NODE")
	if err != nil {
		return "", nil, err
	}
	if !c.IsSet("master-capable") {
		return "", nil, fmt.Errorf("modify %s: nothing to change; give --master-capable=BOOL", name)
	}
	v := c.Bool("master-capable")
	return name, &v, nil
}

func listCmd() *cli.Command {
	return &cli.Command{Name: "list", Usage: "list the nodes", Flags: []cli.Flag{outputFlag},
		Action: func(c *cli.Context) error {
			if err := checkOutput(c); err != nil {
				return err
			}
			var nodes []daemon.NodeInfo
			if err := local(c).call(http.MethodGet, "/v1/list", nil, &nodes); err != nil {
				return err
			}
			if c.String("output") == "json" {
				return printJSON(c, nodes)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPRIMARY IP\tROLE\tMASTER CAPABLE\tRAFT\tALIVE")
			for _, n := range nodes {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%t\n", n.Name, n.PrimaryIP,
					n.Role, n.MasterCapable, n.Raft, n.Alive)
			}
			return tw.Flush()
		}}
}

func printJSON(c *cli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func statusCmd() *cli.Command {
	return &cli.Command{Name: "status", Usage: "show the local daemon's state",
		Flags: []cli.Flag{outputFlag},
		Action: func(c *cli.Context) error {
			if err := checkOutput(c); err != nil {
				return err
			}
			var st daemon.Status
			if err := local(c).call(http.MethodGet, "/v1/status", nil, &st); err != nil {
				return err
			}
			if c.String("output") == "json" {
				return printJSON(c, st)
			}
			fmt.Fprintf(c.App.Writer, "node %s (%s), cluster %q, role %s, raft %s "+
				"(term %d), leader %s, applied index %d, tls dials %d\n", st.Name, st.UUID,
				st.Cluster, st.Role, st.RaftState, st.Term, st.Leader, st.AppliedIndex, st.TLSDials)
			return nil
		}}
}

func clusterCmd() *cli.Command {
	return &cli.Command{Name: "cluster", Usage: "cluster-wide commands",
		Subcommands: append([]*cli.Command{
			{Name: "info", Usage: "show the cluster's settings", Flags: []cli.Flag{outputFlag},
				Action: clusterInfo},
			{Name: "failover", Usage: "make this master candidate the master",
				Action: func(c *cli.Context) error {
					var st daemon.Status
					if err := local(c).call(http.MethodGet, "/v1/status", nil, &st); err != nil {
						return err
					}
					return runOp(c, daemon.OpFailover, daemon.NodeArgs{Node: st.Name})
				}},
			clusterVerifyCmd(), clusterModifyCmd(), renewCryptoCmd(),
		}, rapiCmds()...)}
}

func clusterInfo(c *cli.Context) error {
	if err := checkOutput(c); err != nil {
		return err
	}
	var info daemon.ClusterInfo
	if err := local(c).call(http.MethodGet, "/v1/cluster", nil, &info); err != nil {
		return err
	}
	if c.String("output") == "json" {
		return printJSON(c, info)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "cluster\t%s\nuuid\t%s\nmaster\t%s (%s)\ncandidate pool size\t%d\n"+
		"candidates\t%d of %d nodes\nssh management\t%t\nauthorized keys file\t%s\n"+
		"config index\t%d\n", info.Name, info.UUID, info.Master, info.MasterIP,
		info.CandidatePoolSize, info.Candidates, info.Nodes, info.ModifySSHSetup,
		info.AuthorizedKeysFile, info.ConfigIndex)
	return tw.Flush()
}

func clusterModifyCmd() *cli.Command {
	return &cli.Command{Name: "modify", Usage: "change cluster-wide settings",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "master-capability-rapi-modifiable",
				Usage: "yes or no: may RAPI change master_capable (makes every node a potential candidate)"},
			&cli.IntFlag{Name: "candidate-pool-size", Usage: "how many master candidates to keep",
				DefaultText: "unchanged"},
			&cli.StringFlag{Name: "modify-ssh-setup",
				Usage: "no: stop managing SSH keys and authorized_keys (the downgrade " +
					"to a hand-made layout); it is switched back on by " +
					"renew-crypto --new-ssh-keys --enable-ssh-management"},
		},
		Action: func(c *cli.Context) error {
			var a daemon.ClusterModifyArgs
			if c.IsSet("modify-ssh-setup") {
				v, err := yesNo(c.String("modify-ssh-setup"))
				if err != nil {
					return fmt.Errorf("--modify-ssh-setup: %w", err)
				}
				a.ModifySSHSetup = &v
			}
			if c.IsSet("master-capability-rapi-modifiable") {
				v, err := yesNo(c.String("master-capability-rapi-modifiable"))
				if err != nil {
					return err
				}
				a.MasterCapabilityRapiModifiable = &v
			}
			if c.IsSet("candidate-pool-size") {
				v := c.Int("candidate-pool-size")
				a.CandidatePoolSize = &v
			}
			if a.MasterCapabilityRapiModifiable == nil && a.CandidatePoolSize == nil &&
				a.ModifySSHSetup == nil {
				return fmt.Errorf("cluster modify: nothing to change; give " +
					"--master-capability-rapi-modifiable=yes|no, --candidate-pool-size=N " +
					"or --modify-ssh-setup=no")
			}
			return runOp(c, daemon.OpClusterModify, a)
		}}
}

func yesNo(v string) (bool, error) {
	switch v {
	case "yes", "true":
		return true, nil
	case "no", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not yes or no", v)
}
