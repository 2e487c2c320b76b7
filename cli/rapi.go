package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"ganeti-node/daemon"
	"ganeti-node/rapi"
)

// rapiCmds are the `cluster` subcommands that administer RAPI: its
// users (changed on the master, which copies them to the candidates)
// and its certificate, which clients trust explicitly.
func rapiCmds() []*cli.Command {
	return []*cli.Command{
		{Name: "rapi-users", Usage: "manage the users of the remote API",
			Subcommands: []*cli.Command{rapiUsersListCmd(), rapiUsersAddCmd(),
				rapiUsersRemoveCmd(), rapiUsersImportCmd()}},
		{Name: "rapi-cert", Usage: "print the RAPI server certificate for clients to trust",
			Action: func(c *cli.Context) error {
				var raw []byte
				if err := local(c).call(http.MethodGet, "/v1/rapi/cert", nil, &raw); err != nil {
					return err
				}
				_, err := c.App.Writer.Write(raw)
				return err
			}},
	}
}

func rapiUsersListCmd() *cli.Command {
	return &cli.Command{Name: "list", Usage: "list the users and their access",
		Flags: []cli.Flag{outputFlag},
		Action: func(c *cli.Context) error {
			if err := checkOutput(c); err != nil {
				return err
			}
			var users []rapi.UserInfo
			if err := local(c).call(http.MethodGet, "/v1/rapi/users", nil, &users); err != nil {
				return err
			}
			if c.String("output") == "json" {
				return printJSON(c, users)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tACCESS")
			for _, u := range users {
				access := "read"
				if u.Write {
					access = "write"
				}
				fmt.Fprintf(tw, "%s\t%s\n", u.Name, access)
			}
			return tw.Flush()
		}}
}

func rapiUsersAddCmd() *cli.Command {
	return &cli.Command{Name: "add", ArgsUsage: "USER",
		Usage: "add or replace a user; the password is read from --password-file " +
			"or the first line of standard input and stored hashed ({HA1})",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "write", Usage: "allow changes, not only queries"},
			&cli.StringFlag{Name: "password-file", Value: "-",
				Usage: "file whose first line is the password (- for standard input)"},
		},
		Action: func(c *cli.Context) error {
			name, err := oneArg(c, "USER")
			if err != nil {
				return err
			}
			pw, err := readPassword(c.String("password-file"), c.App.Reader)
			if err != nil {
				return err
			}
			a := daemon.RAPIUserArgs{Name: name, Password: pw, Write: c.Bool("write")}
			var res daemon.OpResult
			if err := local(c).call(http.MethodPost, "/v1/rapi/users", a, &res); err != nil {
				return err
			}
			printResult(c.App.Writer, &res)
			return nil
		}}
}

// readPassword returns the first line of path ("-": in) without its
// line ending. Passwords never come from the command line, where other
// users could see them.
func readPassword(path string, in io.Reader) (string, error) {
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		defer f.Close()
		in = f
	}
	if in == nil {
		in = os.Stdin
	}
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("empty password: give it on the first line of " +
			"standard input or of --password-file")
	}
	return pw, nil
}

func rapiUsersRemoveCmd() *cli.Command {
	return &cli.Command{Name: "remove", ArgsUsage: "USER", Usage: "remove a user",
		Action: func(c *cli.Context) error {
			name, err := oneArg(c, "USER")
			if err != nil {
				return err
			}
			var res daemon.OpResult
			path := "/v1/rapi/users/" + url.PathEscape(name)
			if err := local(c).call(http.MethodDelete, path, nil, &res); err != nil {
				return err
			}
			printResult(c.App.Writer, &res)
			return nil
		}}
}

func rapiUsersImportCmd() *cli.Command {
	return &cli.Command{Name: "import", ArgsUsage: "FILE",
		Usage: "replace every user with those of a Ganeti users file " +
			"(checked first; kept as written)",
		Action: func(c *cli.Context) error {
			path, err := oneArg(c, "FILE")
			if err != nil {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("reading users file: %w", err)
			}
			if _, err := rapi.ParseUsers(data); err != nil {
				return fmt.Errorf("%s: %w; nothing changed", path, err)
			}
			var res daemon.OpResult
			a := daemon.RAPIUsersFile{Data: string(data)}
			if err := local(c).call(http.MethodPut, "/v1/rapi/users", a, &res); err != nil {
				return err
			}
			printResult(c.App.Writer, &res)
			return nil
		}}
}
